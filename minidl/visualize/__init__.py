"""Pictures of what a ConvNet learned: filter grids, feature maps, the ZF deconvnet, top-9 patches;
and charts (plots.py: line and bar charts, a run's curves), drawn with matplotlib.

Every picture is a PIL image (shown inline by Jupyter). Pictures of arrays (filter grids, feature
maps) are composed pixel for pixel and written with Pillow; charts and titled figures are drawn
with matplotlib's Agg backend (a file, never a window).
"""
from minidl.visualize.filters import (filter_grid, save_filter_grid, plot_filters, to_image,  # noqa: F401
                                     save_image, tile)
from minidl.visualize.features import feature_maps, feature_grid, save_feature_maps, layer_outputs  # noqa: F401
from minidl.visualize.deconvnet import Deconvnet, DeconvResult, deconv_image, conv_transpose  # noqa: F401
from minidl.visualize.patches import receptive_field, top_patches, TopPatches, crop  # noqa: F401
from minidl.visualize.plots import line_plot, bar_chart, plot_curves  # noqa: F401

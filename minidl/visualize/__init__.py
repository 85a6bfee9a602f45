"""Pictures of what a ConvNet learned: filter grids, feature maps, the ZF deconvnet, top-9 patches.

Every picture is a PIL image (shown inline by Jupyter) and is written with Pillow.
"""
from minidl.visualize.filters import filter_grid, save_filter_grid, to_image, save_image, tile  # noqa: F401
from minidl.visualize.features import feature_maps, feature_grid, save_feature_maps, layer_outputs  # noqa: F401
from minidl.visualize.deconvnet import Deconvnet, DeconvResult, deconv_image, conv_transpose  # noqa: F401
from minidl.visualize.patches import receptive_field, top_patches, TopPatches, crop  # noqa: F401
from minidl.visualize.plots import line_plot, bar_chart  # noqa: F401

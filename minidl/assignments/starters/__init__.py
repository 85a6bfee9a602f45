"""The starter files: `minidl assignments start DIR` copies the part*.py files; fill in every stub."""

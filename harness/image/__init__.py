"""Guest images: an initramfs per arch from Debian packages, guest-scripts and helpers."""

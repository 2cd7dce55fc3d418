"""The wheel carries libvcsdk.so (copied in by scripts/build-python.sh), so it is platform-specific."""
from setuptools import setup
from setuptools.dist import Distribution


class BinaryDistribution(Distribution):
    """Marks the wheel as platform-specific: it ships a native library."""

    def has_ext_modules(self):
        return True


setup(distclass=BinaryDistribution)

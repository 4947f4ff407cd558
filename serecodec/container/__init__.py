"""The archive container: format 4 (header + independent chunks), formats 1-3 read by ``legacy``."""
from .archive import FORMATS, VERSION, Archive, Chunk, iter_chunks, pixel_crc
from .limits import MAX_IMAGE_PIXELS, MAX_NAME_BYTES, MAX_TOTAL_PIXELS, check_image_shape
from .parsing import parse

__all__ = ["Archive", "Chunk", "FORMATS", "VERSION", "MAX_IMAGE_PIXELS", "MAX_NAME_BYTES", "MAX_TOTAL_PIXELS",
           "check_image_shape", "iter_chunks", "parse", "pixel_crc"]

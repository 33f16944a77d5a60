"""File container and packing of a trained model's tables into sections and back."""

from nerfcompress.bitstream.container import (
    FORMAT_VERSION,
    MAGIC,
    SectionIndex,
    read_container,
    read_container_index,
    write_container,
)
from nerfcompress.bitstream.model_codec import (
    TableCodec,
    UnsupportedTableError,
    decode_tables,
    encode_tables,
    register_table_codec,
)
from nerfcompress.bitstream.tensors import pack_tensors, unpack_tensors

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "SectionIndex",
    "TableCodec",
    "UnsupportedTableError",
    "decode_tables",
    "encode_tables",
    "pack_tensors",
    "read_container",
    "read_container_index",
    "register_table_codec",
    "unpack_tensors",
    "write_container",
]

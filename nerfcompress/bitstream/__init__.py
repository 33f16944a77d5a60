"""File container and packing of a trained model's tables into sections and back."""

from nerfcompress.bitstream.container import (
    FORMAT_VERSION,
    MAGIC,
    SectionIndex,
    level_section_name,
    read_container,
    read_container_index,
    read_container_prefix,
    split_level_section,
    write_container,
)
from nerfcompress.bitstream.levels import (
    decodable_levels,
    grid_level_counts,
    level_prefix_bytes,
    levels_to_decode,
    order_sections,
)
from nerfcompress.bitstream.model_codec import (
    PLAIN_STORAGES,
    TableCodec,
    UnsupportedTableError,
    decode_tables,
    encode_tables,
    plain_codec,
)

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "PLAIN_STORAGES",
    "SectionIndex",
    "TableCodec",
    "UnsupportedTableError",
    "decodable_levels",
    "decode_tables",
    "encode_tables",
    "grid_level_counts",
    "level_prefix_bytes",
    "level_section_name",
    "levels_to_decode",
    "order_sections",
    "plain_codec",
    "read_container",
    "read_container_index",
    "read_container_prefix",
    "split_level_section",
    "write_container",
]

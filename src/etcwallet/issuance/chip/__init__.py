"""The ETC user card and OBU as the host sees them: APDUs, file layouts, readers, keys and MACs."""

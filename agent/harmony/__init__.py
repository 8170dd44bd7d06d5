"""The harmony layer: the encoding and its offline vocabulary, tolerant parsing, and tool schemas."""

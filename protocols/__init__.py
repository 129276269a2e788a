"""Wire protocols: sans-I/O codecs (bytes in, messages out) and encoders for replies and commands."""

"""Post-processes the generated Python bindings (scripts/gen-bindings.sh): the generator copies byte
strings into Rust buffers one byte at a time in Python (about 0.25 µs a byte, 300 µs for a 1200-byte
media frame); this replaces those loops with one ctypes.memmove each. Fails if the generated code no
longer has the expected shape, so that a UniFFI upgrade is noticed."""
import sys

path = sys.argv[1]
text = open(path).read()
replacements = [
    (
        """            for i, byte in enumerate(struct.pack(format, value)):
                self.rbuf.data[self.rbuf.len + i] = byte
""",
        """            packed = struct.pack(format, value)
            ctypes.memmove(ctypes.addressof(self.rbuf.data.contents) + self.rbuf.len, packed, len(packed))
""",
    ),
    (
        """        with self._reserve(len(value)):
            for i, byte in enumerate(value):
                self.rbuf.data[self.rbuf.len + i] = byte
""",
        """        with self._reserve(len(value)):
            ctypes.memmove(ctypes.addressof(self.rbuf.data.contents) + self.rbuf.len, bytes(value), len(value))
""",
    ),
]
for old, new in replacements:
    if text.count(old) != 1:
        sys.exit(f"patch_python: the generated bindings changed shape; expected once:\n{old}")
    text = text.replace(old, new)
open(path, "w").write(text)

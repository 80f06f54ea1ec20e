"""The SMPP 3.4 protocol core: values, wire codec, text codecs and the session state machine.

Nothing in this package does I/O, reads a clock or configures logging: bytes and times go in,
bytes and events come out. The trio code that moves them lives in :mod:`gatewayd.transport`.
"""

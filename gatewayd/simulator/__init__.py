"""The bundled SMSC simulator: the demo peer, the test double and the benchmark target."""

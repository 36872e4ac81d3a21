"""The pure core: values, decisions and errors. No I/O, no imports from the rest of FabGuard."""

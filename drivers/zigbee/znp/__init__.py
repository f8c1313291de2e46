"""TI Z-Stack Monitor-and-Test (MT) / ZNP serial protocol: frames and command tables (pure)."""

"""The Trainer's user module (its own folder, as TFX expects of a `module_file`)."""

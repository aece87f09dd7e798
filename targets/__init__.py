# Data package: the target catalog (*.toml). Nothing to import here.

"""What the images run: trainer, server, monitor. They use api, storage and registry only."""

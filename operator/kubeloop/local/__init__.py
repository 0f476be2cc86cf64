"""`kubeloop local`: the whole loop on one machine (the emulator lives in `emulator`)."""

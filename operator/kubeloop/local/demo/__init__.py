"""The `kubeloop local demo` (`make demo`): a scenario run against the local cluster.

`scenario` holds the steps (the end-to-end test runs the same function) on data made by
`datagen`, `traffic` plays prediction requests, `liveview` shows progress, `report` writes the
HTML report and `demo` ties them together for the command line.
"""

__all__: list[str] = []

"""The local cluster: a Kubernetes API and pods as local processes, no real cluster.

The API is kmock's emulator made kopf- and kubectl-ready (`emulator`, with `discovery`,
`tables`, `openapi`, `serverside_apply`, `selectors`, `protobuf`, `builtins`, `podlogs`);
`kubeapi` is the small client the rest uses. The pod runner (`podrunner`) runs the controllers
(`jobcontroller`, `cronjobcontroller` with the pure schedule decisions in `cronjobs`,
`deploymentcontroller`, `servicecontroller`) and a kubelet (`kubelet`): pods as processes
(`podspec`, `podstatus`, `processes`) on their own loopback addresses (`podnet`), behind the
Service proxy (`proxy`). `stack` starts API, operator and pod runner together (`supervisor`
restarts the operator), and `statefile` and `down` let `kubeloop local down` stop a running
`up`.
"""

__all__: list[str] = []

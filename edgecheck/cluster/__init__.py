"""Cluster inputs: the API server and its CA from --kubeconfig or from a joined node's own files,
and the node components (YurtHub) a run in phase running checks locally."""

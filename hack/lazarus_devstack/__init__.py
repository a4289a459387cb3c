"""A local, embedded Lazarus environment: etcd + kube-apiserver (+ controllers) and an S3 server.

Everything binds to 127.0.0.1 and lives in one run directory, so tests and the
demo never touch the user's own kube context.
"""

"""The operator tests' fixtures: fake kubelet, operator process, TrainingJob helpers."""

from tests.operator.conftest import jobs, kubelet, s3_secret, start_operator

__all__ = ["jobs", "kubelet", "s3_secret", "start_operator"]

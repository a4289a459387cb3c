"""The checkpoint store as a cycle reaches it: a job's credentials and the store's
answer (the selection), on the storage lane (`lanes`)."""

from __future__ import annotations

from typing import Any

from . import status as s
from . import storage
from .builders import JobRef
from .kube import Kube
from .lanes import storage_lane
from .secretcache import SecretCache
from .spec import JobSpec
from .vocabulary import Selection, StorageProblem


class StoreAccess:
    def __init__(self, kube: Kube) -> None:
        self.lane = storage_lane()  # storage calls: threads of their own
        self.secrets = SecretCache(kube.get_secret)  # the Secrets jobs name, by GET

    async def select(
        self, ref: JobRef, spec: JobSpec, attempt: int | None
    ) -> Selection | StorageProblem:
        """The newest valid checkpoint in `attempt`'s lineage, or why there is no answer."""
        if storage.delegated(spec.checkpoint):
            return Selection(None, (), 0, delegated=True)
        try:
            cred = await self.credentials(ref.namespace, spec)
        except storage.CredentialsError as err:
            return storage.problem_of(err, spec.checkpoint.uri)
        answer = await storage.select(spec.checkpoint, cred, attempt, ref, lane=self.lane)
        if isinstance(answer, StorageProblem) and answer.reason == s.R_ACCESS_DENIED:
            self._forget_secret(ref.namespace, spec)  # rotated? the next retry reads it again
        return answer

    async def credentials(self, ns: str, spec: JobSpec) -> storage.Credentials:
        """The job's storage credentials: the keys it names of the Secret it names, by
        GET through `secrets` (no Secret is watched; at rest none is read per cycle),
        else the operator's own where the platform allows them."""
        ref = spec.checkpoint.secret_ref
        secret: dict[str, Any] | None = None
        if ref is not None:
            keys = (ref.access_key_id_key, ref.secret_access_key_key, ref.region_key)
            data = await self.secrets.data(ns, ref.name, keys)
            secret = None if data is None else {"data": data}
        try:
            return storage.credentials(spec.checkpoint, secret, ns)
        except storage.CredentialsError:
            self._forget_secret(ns, spec)  # a key missing: the fixed Secret is read next time
            raise

    def _forget_secret(self, ns: str, spec: JobSpec) -> None:
        if (ref := spec.checkpoint.secret_ref) is not None:
            self.secrets.forget(ns, ref.name)

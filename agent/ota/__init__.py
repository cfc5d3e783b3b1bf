"""Over-the-air updates: signed manifests for models, zones and config.

The pure core lives here: the manifest schema (`manifest`), the device's trust
file (`trust`), the ordered checks a device runs on a received message
(`verifier`), and the fleet-side key and signing tools (`fleet`). Downloading,
staging and switching come with the applier, which only ever sees a
`Manifest` that `verify` returned.
"""

from agent.ota.errors import ErrorCode, OtaError
from agent.ota.manifest import Manifest, SignedManifest
from agent.ota.trust import TrustFileError, TrustStore
from agent.ota.verifier import verify

__all__ = ["ErrorCode", "Manifest", "OtaError", "SignedManifest", "TrustFileError", "TrustStore", "verify"]

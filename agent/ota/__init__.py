"""Over-the-air updates: signed manifests for models, zones and config.

The pure core lives here: the manifest schema (`manifest`) and the ordered checks
a device runs on a received message (`verifier`), against the device's trust file
(agent/settings/trust.py; the fleet-side signing tools are in fleet/). Downloading,
staging and switching come with the applier, which only ever sees a
`Manifest` that `verify` returned.
"""

from agent.ota.errors import ErrorCode, OtaError
from agent.ota.manifest import Manifest, SignedManifest
from agent.ota.verifier import verify
from agent.settings.trust import TrustFileError, TrustStore

__all__ = ["ErrorCode", "Manifest", "OtaError", "SignedManifest", "TrustFileError", "TrustStore", "verify"]

//! What the resource hands out and publishes: its signing keys, declared scopes,
//! resource-token lifetime, descriptive metadata, the rejection hook and the layer-wide
//! default requirement. Frozen at build time; the builder validates every value first,
//! so that a configured value can never become a malformed header or document later.

use crate::challenge::RejectionHook;
use crate::guard::requirement::Requirement;
use crate::resource_token::Keys;

/// Optional descriptive members of `/.well-known/aauth-resource.json`.
#[derive(Debug, Clone, Default)]
pub(crate) struct MetadataFields {
    pub(crate) name: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) documentation_uri: Option<String>,
    pub(crate) access_mode: Option<String>,
}

/// Frozen authorization configuration, inside the shared state.
pub(crate) struct Authz {
    pub(crate) keys: Keys,
    pub(crate) scopes: Vec<(String, String)>,
    pub(crate) lifetime: u64,
    pub(crate) hook: Option<RejectionHook>,
    pub(crate) default_requirement: Option<Requirement>,
    pub(crate) metadata: MetadataFields,
    /// The access server resource tokens are minted for (four-party), if configured.
    pub(crate) access_server: Option<String>,
    /// Whether any trusted server could grant a scope (an auth server, a person server).
    pub(crate) grantable: bool,
    pub(crate) deny_step_up: bool,
}

//! A real `nginx` on loopback with `auth_request` pointing at a gateway in `auth-request`
//! mode, in front of the echoing upstream: the configuration docs/gateway.md documents.

use std::process::{Child, Command, Stdio};

use super::{TempDir, wait_for_port};

pub struct Nginx {
    pub port: u16,
    child: Child,
    _dir: TempDir,
}

/// The `nginx` binary: on `PATH`, else Debian's `/usr/sbin/nginx`.
fn binary() -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([std::path::PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file())
        .expect(
            "nginx is not installed: apt-get install nginx (.ci/run does); only under CI=true does \
             its absence fail the nginx tests instead of ignoring them",
        )
}

/// The site: `/.well-known/` to the gateway, everything else behind `auth_request`.
pub fn site(port: u16, gateway: u16, upstream: u16) -> String {
    format!(
        r#"
    upstream aauth_gateway {{ server 127.0.0.1:{gateway}; }}
    upstream app {{ server 127.0.0.1:{upstream}; }}

    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 1k;

        location = /_aauth {{
            internal;
            proxy_pass http://aauth_gateway/aauth/auth-request;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Content-Length $http_content_length;
            proxy_set_header Host $http_host;
        }}

        location /.well-known/ {{
            proxy_pass http://aauth_gateway;
            proxy_set_header Host $http_host;
        }}

        location @aauth_401 {{
            add_header AAuth-Requirement $aauth_requirement always;
            add_header Signature-Error $aauth_signature_error always;
            add_header Accept-Signature-Scheme $aauth_accept_scheme always;
            add_header Cache-Control no-store always;
            default_type application/problem+json;
            return 401 '{{"error":"unauthorized","status":401,"title":"Unauthorized"}}';
        }}

        location @aauth_403 {{
            add_header AAuth-Requirement $aauth_requirement always;
            add_header Signature-Error $aauth_signature_error always;
            add_header x-aauth-status $aauth_status always;
            add_header Cache-Control no-store always;
            default_type application/problem+json;
            return 403 '{{"error":"forbidden","status":403,"title":"Forbidden"}}';
        }}

        location / {{
            auth_request /_aauth;
            auth_request_set $aauth_scheme $upstream_http_x_aauth_scheme;
            auth_request_set $aauth_key_thumbprint $upstream_http_x_aauth_key_thumbprint;
            auth_request_set $aauth_agent $upstream_http_x_aauth_agent;
            auth_request_set $aauth_agent_provider $upstream_http_x_aauth_agent_provider;
            auth_request_set $aauth_person $upstream_http_x_aauth_person;
            auth_request_set $aauth_person_issuer $upstream_http_x_aauth_person_issuer;
            auth_request_set $aauth_scope $upstream_http_x_aauth_scope;
            auth_request_set $aauth_bot_origin $upstream_http_x_aauth_bot_origin;
            auth_request_set $aauth_bot_thumbprint $upstream_http_x_aauth_bot_thumbprint;
            auth_request_set $aauth_requirement $upstream_http_aauth_requirement;
            auth_request_set $aauth_signature_error $upstream_http_signature_error;
            auth_request_set $aauth_accept_scheme $upstream_http_accept_signature_scheme;
            auth_request_set $aauth_status $upstream_http_x_aauth_status;
            error_page 401 = @aauth_401;
            error_page 403 = @aauth_403;

            # Set (or, when empty, remove) every identity header: a client's own never
            # passes. nginx cannot remove by prefix: other x-aauth-* names pass through.
            proxy_set_header x-aauth-scheme $aauth_scheme;
            proxy_set_header x-aauth-key-thumbprint $aauth_key_thumbprint;
            proxy_set_header x-aauth-agent $aauth_agent;
            proxy_set_header x-aauth-agent-provider $aauth_agent_provider;
            proxy_set_header x-aauth-person $aauth_person;
            proxy_set_header x-aauth-person-issuer $aauth_person_issuer;
            proxy_set_header x-aauth-scope $aauth_scope;
            proxy_set_header x-aauth-bot-origin $aauth_bot_origin;
            proxy_set_header x-aauth-bot-thumbprint $aauth_bot_thumbprint;
            proxy_set_header Host $http_host;
            proxy_pass http://app;
        }}
    }}
"#
    )
}

impl Nginx {
    pub fn start(port: u16, gateway: u16, upstream: u16) -> Nginx {
        let dir = TempDir::new("nginx");
        let root = dir.path().display().to_string();
        let config = format!(
            "daemon off;\nmaster_process off;\npid {root}/nginx.pid;\nerror_log stderr warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n    access_log off;\n    client_body_temp_path {root}/body;\n    proxy_temp_path {root}/proxy;\n    \
             fastcgi_temp_path {root}/fastcgi;\n    uwsgi_temp_path {root}/uwsgi;\n    scgi_temp_path {root}/scgi;\n{}\n}}\n",
            site(port, gateway, upstream)
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, config).unwrap();
        let log = std::env::var_os("GATEWAY_LOG").is_some();
        let mut child = Command::new(binary())
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg("stderr")
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(if log { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .expect("nginx starts");
        wait_for_port(port, "nginx", &mut child);
        Nginx { port, child, _dir: dir }
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

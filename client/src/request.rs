//! The body of `atectl create`: read from a JSON or YAML file, or built from
//! flags. The body is sent as the user wrote it (as JSON): the daemon
//! validates it, and its message — not a local parser's — is what the user
//! sees for a spec it refuses (an unknown field, a bad capability name…).

use atelet_api::{
    Capabilities, Container, CreateActorRequest, EnvVar, SecurityContext, TemplateRef,
};
use serde_json::Value;

use crate::cli::CreateArgs;

/// Parses a create request file. JSON when it starts with `{`, YAML
/// otherwise (YAML through `serde_norway`, the maintained fork of
/// `serde_yaml`). `name` is used in messages.
pub fn parse_file(name: &str, text: &str) -> Result<Value, String> {
    let value: Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| format!("{name}: not valid JSON: {e}"))?
    } else {
        serde_norway::from_str(text).map_err(|e| format!("{name}: not valid YAML: {e}"))?
    };
    if !value.is_object() {
        return Err(format!(
            "{name}: expected a create request (a mapping with id, template and spec)"
        ));
    }
    Ok(value)
}

/// Applies the command line to a request read from a file: an id given as
/// argument replaces the file's, `--no-start` sets `"start": false`.
pub fn apply_overrides(body: &mut Value, id: Option<&str>, no_start: bool) {
    if let Some(obj) = body.as_object_mut() {
        if let Some(id) = id {
            obj.insert("id".into(), Value::String(id.to_string()));
        }
        if no_start {
            obj.insert("start".into(), Value::Bool(false));
        }
    }
}

/// A one-container request from `create ID --image … [--cmd …]`.
pub fn from_flags(id: &str, args: &CreateArgs) -> CreateActorRequest {
    let (namespace, name) = args
        .template
        .clone()
        .unwrap_or_else(|| ("default".to_string(), id.to_string()));
    let capabilities =
        (!args.cap_add.is_empty() || !args.cap_drop.is_empty()).then(|| Capabilities {
            add: args.cap_add.clone(),
            drop: args.cap_drop.clone(),
        });
    let security_context =
        (capabilities.is_some() || args.user.is_some()).then(|| SecurityContext {
            capabilities,
            run_as_user: args.user.map(|(uid, _)| uid),
            run_as_group: args.user.and_then(|(_, gid)| gid),
        });
    CreateActorRequest {
        id: id.to_string(),
        template: TemplateRef { namespace, name },
        spec: Some(atelet_api::ActorSpec {
            containers: vec![Container {
                name: "main".to_string(),
                image: args.image.clone().unwrap_or_default(),
                command: args.cmd.clone(),
                env: args
                    .env
                    .iter()
                    .map(|(name, value)| EnvVar {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                working_dir: args.workdir.clone(),
                security_context,
                volume_mounts: Vec::new(),
                ports: args
                    .publish
                    .iter()
                    .map(|(host, container)| atelet_api::ContainerPort {
                        container_port: *container,
                        host_port: *host,
                        protocol: None,
                    })
                    .collect(),
                readiness_probe: None,
                resources: (args.cpu.is_some() || args.memory.is_some()).then(|| {
                    atelet_api::ResourceRequirements {
                        limits: Some(atelet_api::ResourceList {
                            cpu: args.cpu.clone(),
                            memory: args.memory.clone(),
                        }),
                        requests: None,
                    }
                }),
            }],
            volumes: Vec::new(),
            network: args
                .network
                .clone()
                .map(|mode| atelet_api::NetworkSpec { mode }),
            lifecycle: None,
        }),
        start: args.no_start.then_some(false),
        restore_from: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use serde_json::json;

    fn create_args(args: &[&str]) -> CreateArgs {
        let cli = Cli::try_parse_from(["atectl", "create"].iter().chain(args)).unwrap();
        match cli.command {
            Command::Create(c) => *c,
            _ => panic!("not create"),
        }
    }

    #[test]
    fn flags_make_a_one_container_request() {
        let a = create_args(&[
            "c1",
            "--image",
            "dir:/r",
            "--env",
            "A=b",
            "--cap-add",
            "NET_ADMIN",
            "--cap-drop",
            "KILL",
            "--user",
            "1000:1001",
            "--workdir",
            "/tmp",
            "--no-start",
            "--cmd",
            "sleep",
            "10",
        ]);
        let req = from_flags("c1", &a);
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            json!({
                "id": "c1",
                "template": {"namespace": "default", "name": "c1"},
                "spec": {"containers": [{
                    "name": "main",
                    "image": "dir:/r",
                    "command": ["sleep", "10"],
                    "env": [{"name": "A", "value": "b"}],
                    "workingDir": "/tmp",
                    "securityContext": {
                        "capabilities": {"add": ["NET_ADMIN"], "drop": ["KILL"]},
                        "runAsUser": 1000,
                        "runAsGroup": 1001
                    }
                }]},
                "start": false
            })
        );
    }

    #[test]
    fn without_security_flags_there_is_no_security_context() {
        let a = create_args(&["c1", "--image", "dir:/r", "--template", "ns/tmpl"]);
        let v = serde_json::to_value(from_flags("c1", &a)).unwrap();
        assert_eq!(v["template"], json!({"namespace": "ns", "name": "tmpl"}));
        assert!(v["spec"]["containers"][0].get("securityContext").is_none());
        assert!(v.get("start").is_none());
        // A uid alone leaves the group to the default.
        let a = create_args(&["c1", "--image", "dir:/r", "--user", "7"]);
        let v = serde_json::to_value(from_flags("c1", &a)).unwrap();
        assert_eq!(
            v["spec"]["containers"][0]["securityContext"],
            json!({"runAsUser": 7})
        );
    }

    #[test]
    fn yaml_and_json_files_give_the_same_body() {
        let yaml = "id: c1\ntemplate: {namespace: default, name: t}\nspec:\n  containers:\n  - name: app\n    image: dir:/r\n    command: [/bin/sh, -c, 'echo $((1+1))']\n    securityContext:\n      runAsUser: 1000\n";
        let json_text = r#"{"id":"c1","template":{"namespace":"default","name":"t"},"spec":{"containers":[{"name":"app","image":"dir:/r","command":["/bin/sh","-c","echo $((1+1))"],"securityContext":{"runAsUser":1000}}]}}"#;
        let from_yaml = parse_file("a.yaml", yaml).unwrap();
        assert_eq!(from_yaml, parse_file("a.json", json_text).unwrap());
        assert_eq!(
            from_yaml["spec"]["containers"][0]["securityContext"]["runAsUser"],
            1000
        );
    }

    #[test]
    fn unknown_fields_are_left_for_the_daemon_to_refuse() {
        let v = parse_file("a.yaml", "id: c1\nbogus: 1\n").unwrap();
        assert_eq!(v["bogus"], 1);
    }

    #[test]
    fn unparsable_files_name_the_file() {
        let e = parse_file("a.json", "{\"id\": ").unwrap_err();
        assert!(e.starts_with("a.json: not valid JSON"), "{e}");
        let e = parse_file("a.yaml", "id: [unclosed").unwrap_err();
        assert!(e.starts_with("a.yaml: not valid YAML"), "{e}");
        let e = parse_file("a.yaml", "- just\n- a list\n").unwrap_err();
        assert!(e.contains("expected a create request"), "{e}");
    }

    #[test]
    fn overrides_replace_the_id_and_hold_the_start() {
        let mut v = json!({"id": "from-file", "spec": {}});
        apply_overrides(&mut v, Some("c2"), true);
        assert_eq!(v["id"], "c2");
        assert_eq!(v["start"], false);
        let mut v = json!({"id": "from-file"});
        apply_overrides(&mut v, None, false);
        assert_eq!(v, json!({"id": "from-file"}));
    }
}

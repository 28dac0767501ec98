//! The deployment files, checked as far as this machine allows (no Docker engine, no Nomad):
//! the compose file and Nomad jobs parsed and cross-checked, the Grafana dashboard's queries
//! and the alerting rules' against the metric names the services really export, `promtool
//! check metrics` on every service, the alerting rules through `promtool check rules` and
//! their unit tests through `promtool test rules`, the Alertmanager configuration through
//! `amtool`, and a real Prometheus scraping running services and evaluating the rules with the
//! project's own configuration.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use common::{Harness, POLL, eventually};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tool(name: &str) -> Result<PathBuf> {
    let package = match name {
        "amtool" => "prometheus-alertmanager",
        _ => "prometheus",
    };
    let path = std::env::var_os("PATH").context("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("`{name}` not found: install the Debian package `{package}` (scripts/test does so as root)"))
}

/// Runs `command` and fails with its output unless it succeeds; returns its stdout.
fn run_ok(command: &mut std::process::Command) -> Result<String> {
    let out = command.output()?;
    ensure!(
        out.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn yaml(path: &str) -> Result<serde_yaml_ng::Value> {
    let text = std::fs::read_to_string(repo().join(path))?;
    serde_yaml_ng::from_str(&text).with_context(|| format!("{path} parses"))
}

/// The `topcoins_` metric names a PromQL expression reads, histogram suffixes folded.
fn names_in(expr: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("topcoins_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        used.insert(
            name.trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count")
                .to_owned(),
        );
    }
    used
}

/// The alerting rules of `deploy/prometheus/alerts.yml`: (alert name, rule).
fn alert_rules() -> Result<Vec<(String, serde_yaml_ng::Value)>> {
    let rules = yaml("deploy/prometheus/alerts.yml")?;
    let mut out = Vec::new();
    for group in rules["groups"].as_sequence().context("groups")? {
        for rule in group["rules"].as_sequence().context("rules")? {
            let name = rule["alert"].as_str().context("an alerting rule")?;
            out.push((name.to_owned(), rule.clone()));
        }
    }
    Ok(out)
}

/// The receiver URL `deploy/alertmanager/alertmanager.yml` ships with, which compose and the
/// Nomad job replace by the operator's.
const DEFAULT_WEBHOOK_URL: &str = "http://host.docker.internal:5001/";

// ---------------------------------------------------------------------------------------------
// docker-compose.yml

fn compose() -> Result<serde_yaml_ng::Value> {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml"))?;
    let mut value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)?;
    value.apply_merge()?;
    // `<<: *anchor` is merged one level down too (each service).
    if let Some(services) = value.get_mut("services").and_then(|s| s.as_mapping_mut()) {
        for (_, service) in services.iter_mut() {
            service.apply_merge()?;
        }
    }
    Ok(value)
}

fn str_of(v: &serde_yaml_ng::Value) -> String {
    match v {
        serde_yaml_ng::Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

#[test]
fn compose_file_has_every_service_port_dependency_and_volume() -> Result<()> {
    let compose = compose()?;
    let services = compose["services"].as_mapping().context("services")?;
    let names: BTreeSet<String> = services.keys().map(str_of).collect();
    let expected: BTreeSet<String> = [
        "nats",
        "sim",
        "price",
        "ranking",
        "exchanges",
        "recorder",
        "alerts",
        "postgres",
        "api1",
        "api2",
        "prometheus",
        "alertmanager",
        "grafana",
    ]
    .map(String::from)
    .into();
    assert_eq!(names, expected);
    assert!(repo().join("Dockerfile").is_file());

    let service = |name: &str| &compose["services"][name];
    assert!(
        str_of(&service("nats")["command"]).contains("-js"),
        "JetStream on"
    );
    assert!(
        str_of(&service("nats")["volumes"]).contains("nats-data:/data"),
        "NATS data on a volume"
    );
    assert!(
        str_of(&service("postgres")["volumes"]).contains("postgres-data:/var/lib/postgresql/data"),
        "PostgreSQL data on a volume"
    );
    // The recorder and the API nodes use the compose PostgreSQL; the password comes from the
    // environment, with a default only for a laptop.
    for name in ["recorder", "alerts", "api1", "api2"] {
        let url = str_of(&service(name)["environment"]["TOPCOINS_DATABASE_URL"]);
        assert_eq!(
            url, "postgres://topcoins:${POSTGRES_PASSWORD:-topcoins}@postgres:5432/topcoins",
            "{name}"
        );
    }
    assert_eq!(
        str_of(&service("recorder")["depends_on"]["postgres"]["condition"]),
        "service_healthy",
        "the recorder waits for PostgreSQL to be ready"
    );
    assert_eq!(
        str_of(&service("alerts")["depends_on"]["postgres"]["condition"]),
        "service_healthy",
        "the alerts process waits for PostgreSQL to be ready"
    );
    assert_eq!(
        str_of(&service("alerts")["command"]),
        str_of(&serde_yaml_ng::from_str("[alerts]")?)
    );
    assert_eq!(
        str_of(&service("recorder")["command"]),
        str_of(&serde_yaml_ng::from_str("[recorder]")?)
    );
    for name in [
        "sim",
        "price",
        "ranking",
        "exchanges",
        "recorder",
        "alerts",
        "api1",
        "api2",
    ] {
        let s = service(name);
        assert_eq!(str_of(&s["build"]), ".", "{name} builds the topcoins image");
        assert_eq!(str_of(&s["image"]), "topcoins:latest");
    }
    for name in [
        "price",
        "ranking",
        "exchanges",
        "recorder",
        "alerts",
        "api1",
        "api2",
    ] {
        let s = service(name);
        assert_eq!(
            str_of(&s["environment"]["NATS_URL"]),
            "nats://nats:4222",
            "{name}"
        );
        assert!(
            s["depends_on"].get("nats").is_some(),
            "{name} depends on nats"
        );
    }
    for (name, key) in [
        ("price", "CMC_API_KEY"),
        ("ranking", "CRYPTOCOMPARE_API_KEY"),
    ] {
        // Keys come from the environment, never written into the file.
        assert_eq!(
            str_of(&service(name)["environment"][key]),
            format!("${{{key}:-}}")
        );
        assert_eq!(
            str_of(&service(name)["environment"]["TOPCOINS_SIM_URL"]),
            "http://sim:9000"
        );
    }
    let ports = |name: &str| str_of(&service(name)["ports"]);
    assert!(ports("api1").contains("8080:8080") && ports("api2").contains("8081:8080"));
    assert!(ports("prometheus").contains("9090") && ports("grafana").contains("3000"));
    assert!(ports("alertmanager").contains("9093:9093"));

    // Prometheus loads the alerting rules from where compose mounts them (`rule_files` is read
    // from the configuration's directory) and sends alerts to the compose Alertmanager.
    let prometheus = service("prometheus");
    let mounts: Vec<String> = prometheus["volumes"]
        .as_sequence()
        .context("prometheus volumes")?
        .iter()
        .map(str_of)
        .collect();
    let mounted_at = |source: &str| {
        mounts.iter().find_map(|m| {
            let mut parts = m.split(':');
            (parts.next() == Some(source)).then(|| parts.next().unwrap_or_default().to_owned())
        })
    };
    let config_path =
        mounted_at("./deploy/prometheus/prometheus.yml").context("prometheus.yml mounted")?;
    let rules_path = mounted_at("./deploy/prometheus/alerts.yml").context("alerts.yml mounted")?;
    assert!(
        str_of(&prometheus["command"]).contains(&format!("--config.file={config_path}")),
        "Prometheus reads the mounted configuration"
    );
    let config = yaml("deploy/prometheus/prometheus.yml")?;
    let config_dir = Path::new(&config_path)
        .parent()
        .context("config directory")?;
    let rule_files: Vec<&str> = config["rule_files"]
        .as_sequence()
        .context("rule_files")?
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert!(
        rule_files
            .iter()
            .any(|f| config_dir.join(f) == Path::new(&rules_path)),
        "rule_files {rule_files:?} do not name the mounted {rules_path}"
    );
    let alertmanagers = str_of(&config["alerting"]["alertmanagers"]);
    assert!(
        alertmanagers.contains("alertmanager:9093"),
        "alerts go to the compose Alertmanager: {alertmanagers}"
    );
    assert!(
        prometheus["depends_on"]
            .as_sequence()
            .is_some_and(|d| d.iter().any(|s| s.as_str() == Some("alertmanager"))),
        "Prometheus starts after Alertmanager"
    );
    // Alertmanager: a pinned image, its configuration read-only, its state on a volume, and the
    // receiver's URL from the environment (the start script puts it in; see the alerting test).
    let alertmanager = service("alertmanager");
    assert!(
        str_of(&alertmanager["image"]).starts_with("prom/alertmanager:v"),
        "a pinned Alertmanager image"
    );
    let volumes = str_of(&alertmanager["volumes"]);
    assert!(
        volumes.contains(
            "./deploy/alertmanager/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro"
        ),
        "{volumes}"
    );
    assert!(
        volumes.contains("alertmanager-data:/alertmanager"),
        "{volumes}"
    );
    assert_eq!(
        str_of(&alertmanager["environment"]["ALERTMANAGER_WEBHOOK_URL"]),
        format!("${{ALERTMANAGER_WEBHOOK_URL:-{DEFAULT_WEBHOOK_URL}}}")
    );

    // Named volumes are declared; bind mounts point at files in the repository.
    let declared: BTreeSet<String> = compose["volumes"]
        .as_mapping()
        .context("volumes")?
        .keys()
        .map(str_of)
        .collect();
    for (name, s) in services {
        for volume in s["volumes"].as_sequence().into_iter().flatten() {
            let volume = str_of(volume);
            let source = volume.split(':').next().unwrap_or_default();
            if source.starts_with("./") {
                assert!(
                    repo().join(source).exists(),
                    "{} mounts missing {source}",
                    str_of(name)
                );
            } else {
                assert!(
                    declared.contains(source),
                    "{} uses undeclared volume {source}",
                    str_of(name)
                );
            }
        }
    }

    // Prometheus scrapes every topcoins service, on the port it listens on.
    let targets: Value = serde_json::from_slice(&std::fs::read(
        repo().join("deploy/prometheus/targets/compose.json"),
    )?)?;
    let scraped: BTreeSet<String> = targets
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| {
            g["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_owned())
        })
        .collect();
    for (name, var) in [
        ("price", "TOPCOINS_METRICS_LISTEN"),
        ("ranking", "TOPCOINS_METRICS_LISTEN"),
        ("exchanges", "TOPCOINS_METRICS_LISTEN"),
        ("recorder", "TOPCOINS_METRICS_LISTEN"),
        ("alerts", "TOPCOINS_METRICS_LISTEN"),
        ("api1", "TOPCOINS_LISTEN"),
        ("api2", "TOPCOINS_LISTEN"),
        ("sim", "TOPCOINS_LISTEN"),
    ] {
        let listen = str_of(&service(name)["environment"][var]);
        let port = listen.rsplit(':').next().unwrap();
        assert!(
            scraped.contains(&format!("{name}:{port}")),
            "{name}:{port} is not scraped"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// nomad/

fn blocks<'a>(body: &'a hcl::Body, ident: &str) -> Vec<&'a hcl::Block> {
    body.blocks().filter(|b| b.identifier() == ident).collect()
}

fn attr<'a>(body: &'a hcl::Body, key: &str) -> Option<&'a hcl::Expression> {
    body.attributes().find(|a| a.key() == key).map(|a| a.expr())
}

#[test]
fn nomad_jobs_have_checks_resources_policies_and_no_plain_secrets() -> Result<()> {
    let mut jobs = 0;
    for file in [
        "nomad/nats.nomad.hcl",
        "nomad/topcoins.nomad.hcl",
        "nomad/alertmanager.nomad.hcl",
    ] {
        let text = std::fs::read_to_string(repo().join(file))?;
        let body: hcl::Body = hcl::from_str(&text).with_context(|| format!("{file} parses"))?;
        for job in blocks(&body, "job") {
            jobs += 1;
            let job_update = !blocks(job.body(), "update").is_empty();
            let groups = blocks(job.body(), "group");
            ensure!(!groups.is_empty(), "{file}: a job without groups");
            for group in groups {
                let name = group
                    .labels()
                    .first()
                    .map(|l| l.as_str().to_owned())
                    .unwrap_or_default();
                ensure!(
                    job_update || !blocks(group.body(), "update").is_empty(),
                    "{file} {name}: no update policy"
                );
                ensure!(
                    !blocks(group.body(), "restart").is_empty(),
                    "{file} {name}: no restart policy"
                );
                let services = blocks(group.body(), "service");
                ensure!(
                    !services.is_empty(),
                    "{file} {name}: no service registration"
                );
                for service in services {
                    let checks = blocks(service.body(), "check");
                    ensure!(
                        !checks.is_empty(),
                        "{file} {name}: service without a health check"
                    );
                    for check in checks {
                        let kind = attr(check.body(), "type").map(|e| e.to_string());
                        ensure!(
                            kind.as_deref() == Some("\"http\""),
                            "{file} {name}: check is {kind:?}, not http"
                        );
                        ensure!(
                            attr(check.body(), "path").is_some(),
                            "{file} {name}: http check without a path"
                        );
                    }
                }
                for task in blocks(group.body(), "task") {
                    ensure!(
                        !blocks(task.body(), "resources").is_empty(),
                        "{file} {name}: task without resources"
                    );
                    for env in blocks(task.body(), "env") {
                        for a in env.body().attributes() {
                            ensure!(
                                !a.key().contains("API_KEY")
                                    && !a.key().contains("PASSWORD")
                                    && !a.key().contains("TOKEN"),
                                "{file} {name}: secret {} as a plain value",
                                a.key()
                            );
                        }
                    }
                    if ["recorder", "alerts", "api"].contains(&name.as_str()) {
                        let templates: Vec<String> = blocks(task.body(), "template")
                            .iter()
                            .filter_map(|t| attr(t.body(), "data").map(|d| d.to_string()))
                            .collect();
                        ensure!(
                            templates
                                .iter()
                                .any(|d| d.contains("nomadVar")
                                    && d.contains("TOPCOINS_DATABASE_URL")),
                            "{file} {name}: the database URL not from a Nomad variable"
                        );
                    }
                    if ["price", "ranking"].contains(&name.as_str()) {
                        let templates: Vec<String> = blocks(task.body(), "template")
                            .iter()
                            .filter_map(|t| attr(t.body(), "data").map(|d| d.to_string()))
                            .collect();
                        ensure!(
                            templates
                                .iter()
                                .any(|d| d.contains("nomadVar") && d.contains("API_KEY")),
                            "{file} {name}: keys not from a Nomad variable"
                        );
                    }
                }
            }
        }
    }
    assert_eq!(jobs, 3);
    let text = std::fs::read_to_string(repo().join("nomad/topcoins.nomad.hcl"))?;
    assert!(text.contains("group \"recorder\""), "a recorder job group");
    assert!(text.contains("group \"alerts\""), "an alerts job group");
    assert!(
        text.contains("group \"exchanges\""),
        "an exchanges job group"
    );
    assert!(repo().join("nomad/README.md").is_file());
    let prometheus = std::fs::read_to_string(repo().join("nomad/prometheus.yml"))?;
    assert!(
        prometheus.contains("nomad_sd_configs"),
        "scrape discovery through Nomad"
    );

    // The same rules as compose (README: copied beside the configuration), and alerts sent to
    // the service the Alertmanager job registers.
    let prometheus = yaml("nomad/prometheus.yml")?;
    assert_eq!(
        prometheus["rule_files"],
        yaml("deploy/prometheus/prometheus.yml")?["rule_files"]
    );
    let text = std::fs::read_to_string(repo().join("nomad/alertmanager.nomad.hcl"))?;
    let body: hcl::Body = hcl::from_str(&text)?;
    let service = blocks(&body, "job")
        .iter()
        .flat_map(|j| blocks(j.body(), "group"))
        .flat_map(|g| blocks(g.body(), "service"))
        .find_map(|s| attr(s.body(), "name").map(|n| n.to_string()))
        .context("the Alertmanager service")?;
    let discovered = &prometheus["alerting"]["alertmanagers"][0];
    assert!(discovered.get("nomad_sd_configs").is_some());
    assert_eq!(
        format!("{:?}", str_of(&discovered["relabel_configs"][0]["regex"])),
        service,
        "Prometheus keeps the Alertmanager job's service"
    );
    // The job renders the compose routing, the default receiver URL replaced from a variable.
    assert!(text.contains(r#"file("deploy/alertmanager/alertmanager.yml")"#));
    assert!(text.contains(&format!("{DEFAULT_WEBHOOK_URL:?}")));
    assert!(text.contains("nomadVar") && text.contains(".webhook_url"));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// deploy/prometheus/alerts.yml and deploy/alertmanager/

#[test]
fn alerting_rules_and_their_unit_tests_pass_promtool() -> Result<()> {
    use std::process::Command;
    let promtool = tool("promtool")?;
    let rules = alert_rules()?;
    let out = run_ok(
        Command::new(&promtool)
            .args(["check", "rules"])
            .arg(repo().join("deploy/prometheus/alerts.yml")),
    )?;
    assert!(
        out.contains(&format!("{} rules found", rules.len())),
        "{out}"
    );
    // Unit tests with synthetic series (rule_files are read from the test file's directory).
    run_ok(
        Command::new(&promtool)
            .args(["test", "rules"])
            .arg(repo().join("deploy/prometheus/alerts_test.yml")),
    )?;
    // The configuration that loads them, the rule file beside it as compose mounts it.
    run_ok(
        Command::new(&promtool)
            .args(["check", "config"])
            .arg(repo().join("deploy/prometheus/prometheus.yml")),
    )?;

    // Every alert says how urgent it is, waits before firing and explains itself; its unit
    // tests have a case where it fires and one where it must not.
    let tests = yaml("deploy/prometheus/alerts_test.yml")?;
    assert_eq!(str_of(&tests["rule_files"][0]), "alerts.yml");
    let (mut fires, mut silent) = (BTreeSet::new(), BTreeSet::new());
    for test in tests["tests"].as_sequence().context("tests")? {
        for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = str_of(&case["alertname"]);
            if case["exp_alerts"]
                .as_sequence()
                .is_some_and(|a| !a.is_empty())
            {
                fires.insert(name);
            } else {
                silent.insert(name);
            }
        }
    }
    let names: BTreeSet<&String> = rules.iter().map(|(name, _)| name).collect();
    assert_eq!(names.len(), rules.len(), "alert names are unique");
    for (name, rule) in &rules {
        assert!(rule.get("for").is_some(), "{name}: no `for`");
        let severity = rule["labels"]["severity"].as_str();
        assert!(
            matches!(severity, Some("page" | "ticket")),
            "{name}: severity {severity:?}"
        );
        for key in ["summary", "description"] {
            assert!(
                rule["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{name}: no {key}"
            );
        }
        assert!(fires.contains(name), "{name}: no unit test where it fires");
        assert!(
            silent.contains(name),
            "{name}: no unit test where it must not fire"
        );
    }
    Ok(())
}

#[test]
fn alertmanager_configuration_passes_amtool_and_compose_puts_the_webhook_url_in() -> Result<()> {
    use std::process::Command;
    let amtool = tool("amtool")?;
    let config = repo().join("deploy/alertmanager/alertmanager.yml");
    let text = std::fs::read_to_string(&config)?;
    assert!(
        text.contains(&format!("url: '{DEFAULT_WEBHOOK_URL}'")),
        "the default receiver URL that compose and the Nomad job replace"
    );
    run_ok(Command::new(&amtool).arg("check-config").arg(&config))?;
    for severity in ["page", "ticket"] {
        run_ok(
            Command::new(&amtool)
                .args(["config", "routes", "test", "--verify.receivers=webhook"])
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("severity={severity}")),
        )?;
    }

    // Compose's start script, run as the container would (compose turns `$$` into `$`), with
    // a URL that sed would misread unescaped: the rendered configuration names it and passes.
    let compose = compose()?;
    let script = compose["services"]["alertmanager"]["command"][0]
        .as_str()
        .context("the start script")?;
    let exec = "exec /bin/alertmanager --config.file=/alertmanager/alertmanager.yml";
    ensure!(script.contains(exec), "{script}");
    let script = script
        .replace("$$", "$")
        .replace("/etc/alertmanager/alertmanager.yml", "\"$SOURCE\"")
        .replace(exec, "exit 0 #")
        .replace("/alertmanager/alertmanager.yml", "\"$RENDERED\"");
    let dir = tempfile::tempdir()?;
    let rendered = dir.path().join("alertmanager.yml");
    let url = "https://hooks.example/topcoins?a=1&b=2|3";
    run_ok(
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("SOURCE", &config)
            .env("RENDERED", &rendered)
            .env("ALERTMANAGER_WEBHOOK_URL", url),
    )?;
    let text = std::fs::read_to_string(&rendered)?;
    assert!(text.contains(&format!("url: '{url}'")), "{text}");
    assert!(!text.contains(DEFAULT_WEBHOOK_URL), "{text}");
    run_ok(Command::new(&amtool).arg("check-config").arg(&rendered))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Metrics of running services: the dashboard, promtool, a real Prometheus.

/// A small system with every service exporting metrics over HTTP, some faults injected so the
/// rarer metrics have values. Returns the harness, its parts, and each service's /metrics URL.
struct Running {
    h: Harness,
    parts: Vec<common::Component>,
    urls: Vec<(String, String)>,
    _db_dir: tempfile::TempDir,
}

async fn running() -> Result<Running> {
    let h = Harness::start(200).await?;
    // The recorder, into a SQLite file, its metrics in the actors' registry.
    let db_dir = tempfile::tempdir()?;
    let database = topcoins_history::DatabaseUrl::Sqlite(db_dir.path().join("history.db"));
    let recorder = {
        let nats = h.nats_config("topcoins-recorder");
        let registry = h.actor_registry.clone();
        common::Component::spawn(move |s| {
            Box::pin(topcoins_recorder::run(
                topcoins_recorder::RecorderConfig::default(),
                database,
                nats,
                registry,
                None,
                s.wait(),
            ))
        })
    };
    let node = h.start_api().await?;
    let price = h.start_price(POLL);
    let ranking = h.start_ranking(POLL);
    h.ready(&node, "/").await?;
    // The actors' registry over HTTP, as `topcoins price --metrics-listen` serves it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let actors_addr = listener.local_addr()?;
    let registry = h.actor_registry.clone();
    let metrics_http = common::Component::spawn(move |s| {
        Box::pin(topcoins::metrics_http::serve(listener, registry, s.wait()))
    });
    // Rarer metrics: a rejected body with a broken shape, a rate-limit block, a moved market,
    // a cache hit, a 304.
    h.fault(
        serde_json::json!({"endpoint": "coinmarketcap", "fault": "missing_fields", "times": 1}),
    )
    .await?;
    h.fault(serde_json::json!({"endpoint": "cryptocompare", "fault": "error_in_200", "times": 1}))
        .await?;
    h.tick().await?;
    // Counted from here, after the faults and the tick: of three more cycles of each actor,
    // the second at the latest starts after this point, so it meets the fault (one use) and
    // the third fetches the moved market.
    let since = (h.cycles("prices"), h.cycles("ranking"));
    h.cycles_past("prices", since.0, 3.0).await?;
    h.cycles_past("ranking", since.1, 3.0).await?;
    for _ in 0..3 {
        h.get(&node.url("/?limit=10")).await?;
    }
    let urls = vec![
        ("api".to_owned(), node.url("/metrics")),
        ("actors".to_owned(), format!("http://{actors_addr}/metrics")),
        ("sim".to_owned(), format!("{}/metrics", h.sim_url())),
    ];
    eventually("the recorder to record", || async {
        Ok((h.actor_metric(
            "topcoins_recorder_notices_total",
            &[("outcome", "recorded")],
        ) >= 2.0)
            .then_some(()))
    })
    .await?;
    eventually("actor metrics to be served", || async {
        Ok(h.get(&urls[1].1)
            .await
            .ok()
            .filter(|r| r.status() == 200)
            .map(|_| ()))
    })
    .await?;
    Ok(Running {
        h,
        parts: vec![node.component, price, ranking, recorder, metrics_http],
        urls,
        _db_dir: db_dir,
    })
}

impl Running {
    async fn stop(self) {
        for c in self.parts {
            c.stop().await;
        }
        self.h.sim.stop().await;
    }
}

fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| {
            n.trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count")
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_queries_use_exported_metrics_and_promtool_passes() -> Result<()> {
    let promtool = tool("promtool")?;
    let r = running().await?;
    let mut exported = BTreeSet::new();
    for (name, url) in &r.urls {
        let text = r.h.get(url).await?.text().await?;
        assert!(!text.contains("test-key"), "{name}: an API key in /metrics");
        exported.extend(exported_names(&text));
        // promtool lints the exposition: names, suffixes, types, help.
        let mut child = std::process::Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        use std::io::Write;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(text.as_bytes())?;
        let out = child.wait_with_output()?;
        ensure!(
            out.status.success(),
            "promtool check metrics failed for {name}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let dashboard: Value = serde_json::from_slice(&std::fs::read(
        repo().join("deploy/grafana/dashboards/topcoins.json"),
    )?)?;
    let panels = dashboard["panels"].as_array().context("panels")?;
    let titles: Vec<String> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap_or_default().to_lowercase())
        .collect();
    for wanted in [
        "request",
        "latency",
        "cache hit",
        "snapshot age",
        "notices",
        "upstream calls",
        "errors",
        "credits",
        "price history",
        "recorder lag",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(wanted)),
            "no panel about {wanted}"
        );
    }
    let mut used = BTreeSet::new();
    for panel in panels {
        for target in panel["targets"].as_array().context("targets")? {
            if target.get("rawSql").is_some() {
                // SQL panels are run against the real schema in their own test.
                continue;
            }
            used.extend(names_in(target["expr"].as_str().context("expr")?));
        }
    }
    let missing: Vec<&String> = used.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "dashboard queries metrics nobody exports: {missing:?}"
    );
    assert!(used.len() >= 15, "{used:?}");

    // The alerting rules too. Two kinds of names a running system need not show: a family
    // whose first series comes with its first event (checked against the source that
    // registers it instead), and the alerts service's, which is not among the services
    // started here (checked against its metrics once that crate exists).
    let lazy = [("topcoins_price_failovers_total", "upstream/src/metrics.rs")];
    let alerts_service = [
        "topcoins_alert_deliveries_total",
        "topcoins_alert_outbox_pending",
        "topcoins_alerts_fired_total",
        "topcoins_alert_evaluation_seconds",
    ];
    let registered_in = |name: &str, file: &str| -> Result<bool> {
        let source = std::fs::read_to_string(repo().join(file))?;
        Ok(source.contains(&format!("\"{name}\"")))
    };
    let mut in_rules = BTreeSet::new();
    for (name, rule) in alert_rules()? {
        let expr = rule["expr"]
            .as_str()
            .with_context(|| format!("{name}: expr"))?;
        let names = names_in(expr);
        assert!(
            !names.is_empty() || expr.contains("up{"),
            "{name} reads no topcoins metric"
        );
        in_rules.extend(names);
    }
    let mut missing = Vec::new();
    for name in in_rules.difference(&exported) {
        if let Some(&(_, file)) = lazy.iter().find(|(n, _)| *n == name.as_str()) {
            assert!(
                registered_in(name.as_str(), file)?,
                "{name} is not registered in {file}"
            );
        } else if alerts_service.contains(&name.as_str()) {
            let file = "services/alerts/src/metrics.rs";
            if repo().join(file).is_file() {
                assert!(
                    registered_in(name.as_str(), file)?,
                    "{name} is not registered in {file}"
                );
            }
        } else {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "alerting rules read metrics nobody exports: {missing:?}"
    );
    r.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_scrapes_every_service() -> Result<()> {
    let prometheus = tool("prometheus")?;
    let r = running().await?;
    // The project's own configuration and alerting rules, side by side as compose mounts
    // them, with targets written for this run. (Its Alertmanager, `alertmanager:9093`, is not
    // there: no alert fires this soon, and one that did would only be logged as undelivered.)
    let dir = tempfile::tempdir()?;
    for file in ["prometheus.yml", "alerts.yml"] {
        std::fs::copy(
            repo().join("deploy/prometheus").join(file),
            dir.path().join(file),
        )?;
    }
    std::fs::create_dir(dir.path().join("targets"))?;
    let targets: Vec<Value> = r
        .urls
        .iter()
        .map(|(service, url)| {
            let host = url.trim_start_matches("http://").split('/').next().unwrap();
            serde_json::json!({"targets": [host], "labels": {"service": service}})
        })
        .collect();
    std::fs::write(
        dir.path().join("targets/test.json"),
        serde_json::to_vec(&targets)?,
    )?;
    // Prometheus, too, is given port 0 and says in its log which port it got.
    let (mut child, mut logs) = common::Logs::spawn(
        tokio::process::Command::new(&prometheus)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .args(["--web.listen-address=127.0.0.1:0", "--log.format=json"])
            .stdout(std::process::Stdio::null()),
    )?;
    let addr: std::net::SocketAddr = logs
        .find("Prometheus listening", |v| {
            (v["msg"] == "Listening on").then(|| v["address"].as_str()?.parse().ok())?
        })
        .await?;
    let api = format!("http://{addr}/api/v1");
    let h = &r.h;
    eventually("every target up", || async {
        let v: Value = h.get(&format!("{api}/targets")).await?.json().await?;
        let active = v["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok((active.len() == 3 && active.iter().all(|t| t["health"] == "up")).then_some(()))
    })
    .await?;
    // Every alerting rule loaded, and evaluated on the real series without an error (a
    // many-to-many match, say, is only found at evaluation).
    let rules = alert_rules()?.len();
    eventually("every alerting rule evaluated", || async {
        let v: Value = h.get(&format!("{api}/rules")).await?.json().await?;
        let loaded: Vec<Value> = v["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        ensure!(
            loaded.len() == rules,
            "{} rules loaded, not {rules}",
            loaded.len()
        );
        if let Some(bad) = loaded.iter().find(|r| r["health"] == "err") {
            bail!("rule {} fails: {}", bad["name"], bad["lastError"]);
        }
        Ok(loaded.iter().all(|r| r["health"] == "ok").then_some(()))
    })
    .await?;
    // Each entry: metrics of which at least one must have a positive value. A node takes in a
    // snapshot either from the bytes pushed as it was stored or, at warm-up, by a fetch.
    for names in [
        &["topcoins_http_requests_total"][..],
        &["topcoins_notices_published_total"],
        &[
            "topcoins_api_snapshot_fetches_total",
            "topcoins_api_snapshots_pushed_total",
        ],
        &["topcoins_sim_requests_total"],
        &["topcoins_upstream_credits_used_total"],
    ] {
        let mut values: HashMap<String, f64> = HashMap::new();
        for query in names {
            let v: Value = eventually(query, || async {
                let v: Value = h
                    .get(&format!("{api}/query?query={query}"))
                    .await?
                    .json()
                    .await?;
                Ok((!v["data"]["result"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .is_empty())
                .then_some(v))
            })
            .await?;
            values.extend(v["data"]["result"].as_array().unwrap().iter().map(|s| {
                (
                    s["metric"].to_string(),
                    s["value"][1].as_str().unwrap_or("0").parse().unwrap_or(0.0),
                )
            }));
        }
        if !values.values().any(|v| *v > 0.0) {
            bail!("none of {names:?} has a positive value: {values:?}");
        }
    }
    let _ = child.kill().await;
    r.stop().await;
    Ok(())
}

/// The price-history panel's SQL, and its variable's, run on a real PostgreSQL with the
/// recorder's schema and a few recorded candles, Grafana's macros filled in as Grafana does.
#[tokio::test]
async fn dashboard_history_sql_runs_on_the_recorders_schema() -> Result<()> {
    use topcoins_history::{Batch, CandleStore, Store};
    let pg = topcoins_testkit::Postgres::start().await?;
    let store = Store::open(&pg.url().parse()?).await?;
    store.migrate().await?;
    let prices = topcoins_schemas::PriceSnapshot {
        source: "test".into(),
        coins: vec![topcoins_schemas::PricedCoin {
            id: "1".into(),
            symbol: "BTC".into(),
            name: "Bitcoin".into(),
            price_usd: 67000.0,
            market_cap_usd: None,
        }],
    };
    let t = 1_764_547_200_000; // 2025-12-01T00:00:00Z
    store.apply(Batch::from_prices(&prices, t + 60_000)).await?;
    // The coarser rows are the recorder's roll-up of the minutes (SQL readers of the table
    // see them once it ran, within TOPCOINS_ROLLUP_EVERY).
    store.rollup(t + 120_000).await?;
    // A minute the roll-up has not reached (in the `minutes` table): the panel's `1m` shows it.
    store
        .apply(Batch::from_prices(&prices, t + 150_000))
        .await?;

    // The datasource the panels name is provisioned, for PostgreSQL.
    let provisioned = std::fs::read_to_string(
        repo().join("deploy/grafana/provisioning/datasources/postgres.yml"),
    )?;
    assert!(provisioned.contains("uid: topcoins-history"));
    assert!(provisioned.contains("type: grafana-postgresql-datasource"));

    let dashboard: Value = serde_json::from_slice(&std::fs::read(
        repo().join("deploy/grafana/dashboards/topcoins.json"),
    )?)?;
    let psql = topcoins_testkit::postgres::bindir()?.join("psql");
    let run = |sql: String| {
        let out = std::process::Command::new(&psql)
            .args([
                pg.url().as_str(),
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                &sql,
            ])
            .output()?;
        ensure!(
            out.status.success(),
            "{sql}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    };
    let fill = |sql: &str, interval: &str| {
        sql.replace("$symbol", "BTC")
            .replace("$interval", interval)
            .replace("$__unixEpochFrom()", &((t - 86_400_000) / 1000).to_string())
            .replace("$__unixEpochTo()", &((t + 86_400_000) / 1000).to_string())
    };
    let mut ran = 0;
    for panel in dashboard["panels"].as_array().context("panels")? {
        for target in panel["targets"].as_array().context("targets")? {
            let Some(sql) = target["rawSql"].as_str() else {
                continue;
            };
            assert_eq!(target["datasource"]["uid"], "topcoins-history");
            let rows = run(fill(sql, "1h"))?;
            // One 1h candle: its time, close, high, low.
            assert_eq!(rows.lines().count(), 1, "{rows}");
            assert!(rows.contains("67000"), "{rows}");
            // Two 1m candles: one rolled up, one not yet.
            let rows = run(fill(sql, "1m"))?;
            assert_eq!(rows.lines().count(), 2, "{rows}");
            ran += 1;
        }
    }
    assert!(ran >= 1, "a price-history panel");
    for variable in dashboard["templating"]["list"]
        .as_array()
        .context("variables")?
    {
        if variable["datasource"]["uid"] == "topcoins-history" {
            let rows = run(fill(variable["query"].as_str().context("query")?, "1h"))?;
            assert_eq!(rows.trim(), "BTC");
        }
    }
    Ok(())
}

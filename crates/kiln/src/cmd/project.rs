//! `kiln project add|set|list|show`.

use super::{api, print_json};
use crate::api_client::seg;
use crate::ClientOpts;
use clap::{Args, Subcommand};
use kiln_wire::api::{Member, MemberGrant, Project, ProjectCreate, ProjectSettings, ProjectUpdate, Retention, Role, Visibility};
use kiln_wire::notify::{CommitStatusSettings, Delivery};

#[derive(Subcommand)]
pub enum ProjectCmd {
    /// Add a project.
    Add {
        name: String,
        /// Repository: any git URL or a local path.
        #[arg(long)]
        repo: String,
        #[command(flatten)]
        opts: ProjectOpts,
    },
    /// Change a project's settings (what is not given stays).
    Set {
        name: String,
        #[arg(long)]
        repo: Option<String>,
        #[command(flatten)]
        opts: ProjectOpts,
    },
    /// List projects.
    List,
    /// Show one project.
    Show { name: String },
    /// Give USER a role on the project: viewer, developer or maintainer (maintainers and admins).
    Grant { name: String, user: String, role: String },
    /// Take USER's role on the project away (maintainers and admins).
    Revoke { name: String, user: String },
    /// List the project's members and their roles.
    Members { name: String },
    /// Recent notification deliveries (email, webhooks, commit status) and how they went.
    Notifications {
        name: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

#[derive(Args, Default)]
pub struct ProjectOpts {
    /// Default branch [default: main].
    #[arg(long)]
    branch: Option<String>,
    /// Pipeline file in the repository [default: .kiln.yml].
    #[arg(long)]
    pipeline: Option<String>,
    /// Anyone may see it (console, API, badge).
    #[arg(long, conflicts_with_all = ["private", "internal"])]
    public: bool,
    /// Any signed-in user may see it.
    #[arg(long, conflicts_with = "private")]
    internal: bool,
    /// Only its members and admins may see it (the default for a new project).
    #[arg(long)]
    private: bool,
    /// Poll the repository for new commits this often (e.g. 30s).
    #[arg(long)]
    poll: Option<String>,
    /// With --poll: build every new commit, not only the newest.
    #[arg(long)]
    poll_each_commit: bool,
    /// Secret incoming webhooks must be signed with.
    #[arg(long)]
    webhook_secret: Option<String>,
    /// Secret that signs outgoing webhooks (X-Kiln-Signature-256); separate from --webhook-secret.
    #[arg(long)]
    notify_webhook_secret: Option<String>,
    /// Cancel a running build when a newer commit on its branch is queued.
    #[arg(long)]
    cancel_superseded: Option<bool>,
    /// Cron schedules (UTC), comma-separated.
    #[arg(long, value_delimiter = ';')]
    schedule: Vec<String>,
    /// Email recipients, comma-separated.
    #[arg(long, value_delimiter = ',')]
    notify_email: Vec<String>,
    /// When to notify: failure, fixed, success, always, started (comma-separated) [default: failure,fixed].
    #[arg(long, value_delimiter = ',')]
    notify_on: Vec<String>,
    /// URLs to POST build events to, comma-separated; slack+https://… posts a chat message.
    #[arg(long, value_delimiter = ',')]
    notify_webhook: Vec<String>,
    /// A secret NAME=VALUE given to steps as an env var and masked in logs (repeatable); NAME
    /// alone reads its value from stdin, kept off the command line (one such secret).
    #[arg(long = "secret")]
    secrets: Vec<String>,
    /// Delete the secret NAME (repeatable).
    #[arg(long = "unset-secret", value_name = "NAME")]
    unset_secrets: Vec<String>,
    /// Give the project's secrets to test runs uploaded by its maintainers (true or false; off by default).
    #[arg(long, value_name = "BOOL")]
    upload_secrets: Option<bool>,
    /// Report commit status to a forge: github, gitea, or off.
    #[arg(long, value_name = "FORGE")]
    commit_status: Option<String>,
    /// The forge's API base [default: https://api.github.com; Gitea: the repository's host + /api/v1].
    #[arg(long, value_name = "URL")]
    forge_url: Option<String>,
    /// The repository on the forge [default: from --repo's URL].
    #[arg(long, value_name = "OWNER/NAME")]
    forge_repo: Option<String>,
    /// The project secret holding the forge token [default: GITHUB_TOKEN or GITEA_TOKEN].
    #[arg(long, value_name = "NAME")]
    forge_token_secret: Option<String>,
    /// The commit status context [default: kiln/PROJECT].
    #[arg(long, value_name = "TEXT")]
    status_context: Option<String>,
    /// Retention: keep the newest N finished builds per branch [default: the server's].
    #[arg(long, value_name = "N")]
    keep_builds: Option<u32>,
    /// Retention: keep builds younger than D days [default: the server's].
    #[arg(long, value_name = "D")]
    keep_days: Option<u32>,
    /// Retention: keep artifacts younger than D days (the build stays) [default: the server's].
    #[arg(long, value_name = "D")]
    artifact_days: Option<u32>,
}

/// A secret's value from stdin (one line's end removed), so it is in no process list or shell
/// history; typed at a terminal (up to Ctrl-D), it is not shown.
fn secret_from_stdin(name: &str) -> anyhow::Result<String> {
    if name.trim().is_empty() {
        return Err(crate::api_client::Exit(2, "--secret: write NAME=VALUE, or NAME alone to read the value from stdin".into()).into());
    }
    let typed = crate::hidden_input::typed();
    let raw = crate::hidden_input::value(&format!("value of secret {name} (not shown; Enter, then Ctrl-D to end):"))?;
    let v = String::from_utf8(raw).map_err(|_| crate::api_client::Exit(2, format!("--secret {name}: the value on stdin is not UTF-8 text")))?;
    let v = crate::hidden_input::without_line_end(&v).to_string();
    if v.is_empty() && typed {
        return Err(crate::api_client::Exit(2, format!("--secret {name}: nothing was typed; nothing changed")).into());
    }
    if v.is_empty() {
        return Err(crate::api_client::Exit(2, format!("--secret {name}: stdin was empty; pipe the value in (printf %s \"$TOKEN\" | kiln project set … --secret {name})")).into());
    }
    Ok(v)
}

fn non_empty(v: Vec<String>) -> Option<Vec<String>> {
    let v: Vec<String> = v.into_iter().filter(|s| !s.trim().is_empty()).collect();
    (!v.is_empty()).then_some(v)
}

impl ProjectOpts {
    fn settings(&self) -> anyhow::Result<ProjectSettings> {
        let mut secrets = std::collections::BTreeMap::new();
        let names: Vec<&str> = self.secrets.iter().map(|s| s.split_once('=').map_or(s.as_str(), |(k, _)| k)).collect();
        if let Some(twice) = names.iter().enumerate().find_map(|(i, n)| names[..i].contains(n).then_some(n)) {
            return Err(crate::api_client::Exit(2, format!("--secret {twice} is given twice: give each secret once")).into());
        }
        let from_stdin: Vec<&String> = self.secrets.iter().filter(|s| !s.contains('=')).collect();
        if from_stdin.len() > 1 {
            return Err(crate::api_client::Exit(2, format!("--secret {:?} and --secret {:?} would both read stdin: give one NAME alone, the others as NAME=VALUE", from_stdin[0], from_stdin[1])).into());
        }
        for s in &self.secrets {
            match s.split_once('=') {
                Some((k, v)) => secrets.insert(k.to_string(), v.to_string()),
                None => secrets.insert(s.to_string(), secret_from_stdin(s)?),
            };
        }
        Ok(ProjectSettings {
            poll: self.poll.clone(),
            poll_each_commit: self.poll_each_commit.then_some(true),
            webhook_secret: self.webhook_secret.clone(),
            notify_webhook_secret: self.notify_webhook_secret.clone(),
            cancel_superseded: self.cancel_superseded,
            notify_email: non_empty(self.notify_email.clone()),
            notify_on: non_empty(self.notify_on.clone()),
            notify_webhook: non_empty(self.notify_webhook.clone()),
            secrets: (!secrets.is_empty()).then_some(secrets),
            schedule: non_empty(self.schedule.clone()),
            commit_status: self.commit_status_settings(),
            retention: Some(Retention { keep_builds: self.keep_builds, keep_days: self.keep_days, artifact_days: self.artifact_days })
                .filter(|r| *r != Retention::default()),
            upload_secrets: self.upload_secrets,
        })
    }
    fn commit_status_settings(&self) -> Option<CommitStatusSettings> {
        let cs = CommitStatusSettings {
            forge: self.commit_status.clone(),
            url: self.forge_url.clone(),
            repo: self.forge_repo.clone(),
            token_secret: self.forge_token_secret.clone(),
            context: self.status_context.clone(),
        };
        (cs != CommitStatusSettings::default()).then_some(cs)
    }
    fn visibility(&self) -> Option<Visibility> {
        if self.public {
            Some(Visibility::Public)
        } else if self.internal {
            Some(Visibility::Internal)
        } else if self.private {
            Some(Visibility::Private)
        } else {
            None
        }
    }
}

fn print_project(p: &Project) {
    let last = p.last_build.as_ref().map(|b| format!("  last build #{} {}", b.id, b.status)).unwrap_or_default();
    let role = p.role.map(|r| format!("  you: {}", r.as_str())).unwrap_or_default();
    println!("{}  {}  branch {}  {}{role}{last}", p.name, p.repo, p.branch, p.visibility.as_str());
}

fn print_members(name: &str, ms: &[Member]) {
    if ms.is_empty() {
        println!("{name} has no members yet: kiln project grant {name} USER ROLE");
    }
    for m in ms {
        println!("{:<24} {}", m.user, m.role.as_str());
    }
}

pub async fn run(action: ProjectCmd, c: &ClientOpts) -> anyhow::Result<i32> {
    let api = api(c);
    match action {
        ProjectCmd::Add { name, repo, opts } => {
            // A local path is stored absolute, so the server and agents find it wherever they run.
            let repo = match std::path::Path::new(&repo).canonicalize() {
                Ok(p) if !repo.contains("://") && !repo.contains('@') => p.to_string_lossy().into_owned(),
                _ => repo,
            };
            let req = ProjectCreate { name, repo, branch: opts.branch.clone(), pipeline: opts.pipeline.clone(), public: None, visibility: opts.visibility(), settings: opts.settings()? };
            let p: Project = api.post("/api/v1/projects", &req).await?;
            if c.json { print_json(&p) } else { print_project(&p) }
        }
        ProjectCmd::Set { name, repo, opts } => {
            let req = ProjectUpdate {
                repo,
                branch: opts.branch.clone(),
                pipeline: opts.pipeline.clone(),
                public: None,
                visibility: opts.visibility(),
                remove_secrets: opts.unset_secrets.clone(),
                settings: opts.settings()?,
            };
            let p: Project = api.patch(&format!("/api/v1/projects/{}", seg(&name)), &req).await?;
            if c.json { print_json(&p) } else { print_project(&p) }
        }
        ProjectCmd::List => {
            let ps: Vec<Project> = api.get("/api/v1/projects").await?;
            if c.json {
                print_json(&ps)
            } else if ps.is_empty() {
                println!("no projects yet: kiln project add NAME --repo URL-or-path");
            } else {
                ps.iter().for_each(print_project)
            }
        }
        ProjectCmd::Notifications { name, limit } => {
            let ds: Vec<Delivery> = api.get(&format!("/api/v1/projects/{}/notifications?limit={limit}", seg(&name))).await?;
            if c.json {
                print_json(&ds)
            } else if ds.is_empty() {
                println!("no notifications yet for {name}");
            } else {
                for d in &ds {
                    let err = d.last_error.as_deref().map(|e| format!("  {e}")).unwrap_or_default();
                    println!("#{:<5} build {:<5} {:<13} {:<14} {:<8} {:<7} x{} {}{err}", d.id, d.build_id, d.kind, d.event, d.build_status, d.status, d.attempts, d.target);
                }
            }
        }
        ProjectCmd::Grant { name, user, role } => {
            let role = Role::parse(&role).ok_or_else(|| crate::api_client::Exit(2, format!("unknown role {role:?}: use viewer, developer or maintainer")))?;
            let ms: Vec<Member> = api.post(&format!("/api/v1/projects/{}/members", seg(&name)), &MemberGrant { user, role }).await?;
            if c.json { print_json(&ms) } else { print_members(&name, &ms) }
        }
        ProjectCmd::Revoke { name, user } => {
            let ms: Vec<Member> = api.delete(&format!("/api/v1/projects/{}/members/{}", seg(&name), seg(&user))).await?;
            if c.json { print_json(&ms) } else { print_members(&name, &ms) }
        }
        ProjectCmd::Members { name } => {
            let ms: Vec<Member> = api.get(&format!("/api/v1/projects/{}/members", seg(&name))).await?;
            if c.json { print_json(&ms) } else { print_members(&name, &ms) }
        }
        ProjectCmd::Show { name } => {
            let p: Project = api.get(&format!("/api/v1/projects/{}", seg(&name))).await?;
            if c.json { print_json(&p) } else { print_project(&p) }
        }
    }
    Ok(0)
}

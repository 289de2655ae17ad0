//! `kiln user add|list|passwd` (over the API: adding users needs an admin token)
//! and `kiln token create|list|revoke` (your personal API tokens).

use super::{api, print_json};
use crate::api_client::{seg, Exit};
use crate::ClientOpts;
use clap::Subcommand;
use kiln_wire::users::{Me, PasswordChange, TokenCreate, TokenCreated, TokenInfo, User, UserCreate, UserCreated, UserUpdate};

#[derive(Subcommand)]
pub enum UserCmd {
    /// Add a user (admins only). Without --password-stdin a password is generated and printed once.
    Add {
        name: String,
        /// Make the user an admin.
        #[arg(long)]
        admin: bool,
        /// Read the password from standard input (first line; typed at a terminal, it is asked for twice and not shown).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users (admins only).
    List,
    /// Set a password from standard input. Your own: the current password on the first line,
    /// the new one on the second. An admin resetting someone else's: the new one only (their
    /// sessions and API tokens end). Typed at a terminal, each is asked for (the new one twice) and not shown.
    Passwd { name: String },
    /// Disable a user (admins): their sessions and API tokens end at once; they cannot sign in.
    Disable { name: String },
    /// Enable a disabled user again (admins).
    Enable { name: String },
    /// Remove a user with their tokens and project roles (admins).
    Remove { name: String },
    /// Make a user an admin (--admin) or not (--no-admin) (admins).
    Set {
        name: String,
        #[arg(long, conflicts_with = "no_admin", required_unless_present = "no_admin")]
        admin: bool,
        #[arg(long)]
        no_admin: bool,
    },
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Make an API token (printed once; use it as KILN_TOKEN).
    Create {
        /// What the token is for.
        #[arg(long)]
        label: Option<String>,
        /// Admins: make it for this user (a service account or a script).
        #[arg(long)]
        user: Option<String>,
    },
    /// List your tokens (admins: --user NAME or --all).
    List {
        #[arg(long)]
        user: Option<String>,
        #[arg(long, conflicts_with = "user")]
        all: bool,
    },
    /// Revoke a token by id: one of yours, or anyone's as an admin.
    Revoke { id: i64 },
}

/// A new password (and the current one first when `current`) from stdin. Typed at a terminal,
/// the new one is asked for twice: a typo would lock the user out.
fn read_passwords(current: bool) -> anyhow::Result<(Option<String>, String)> {
    let typed = crate::hidden_input::typed();
    let mut prompts = Vec::new();
    if current {
        prompts.push("current password:");
    }
    prompts.push(if current { "new password:" } else { "password:" });
    if typed {
        prompts.push(if current { "new password again:" } else { "password again:" });
    }
    let what = if current { "your current password and the new one" } else { "the password" };
    let mut got = crate::hidden_input::lines(&prompts, what).map_err(|e| Exit(2, e))?;
    if typed && got.pop() != got.last().cloned() {
        return Err(Exit(2, "the two passwords typed differ; nothing changed".into()).into());
    }
    let new = got.pop().expect("one new password");
    Ok((got.pop(), new))
}

fn print_user(c: &ClientOpts, u: &User, what: &str) {
    if c.json {
        print_json(u);
    } else {
        println!("{} {what}", u.name);
    }
}

pub async fn user(action: UserCmd, c: &ClientOpts) -> anyhow::Result<i32> {
    let api = api(c);
    match action {
        UserCmd::Add { name, admin, password_stdin } => {
            let password = if password_stdin { Some(read_passwords(false)?.1) } else { None };
            let r: UserCreated = api.post("/api/v1/users", &UserCreate { name, password, admin }).await?;
            if c.json {
                print_json(&r);
            } else {
                println!("added user {}{}", r.user.name, if r.user.admin { " (admin)" } else { "" });
                if let Some(p) = r.password {
                    println!("password: {p}  (shown only now)");
                }
            }
        }
        UserCmd::List => {
            let users: Vec<User> = api.get("/api/v1/users").await?;
            if c.json {
                print_json(&users);
            } else {
                for u in users {
                    println!("{:<24} {:<6} since {}{}", u.name, if u.admin { "admin" } else { "user" }, u.created_at, if u.disabled { "  disabled" } else { "" });
                }
            }
        }
        UserCmd::Passwd { name } => {
            let me: Me = api.get("/api/v1/me").await?;
            let (current, password) = read_passwords(me.name == name)?;
            let req = PasswordChange { password, current };
            let u: User = api.post(&format!("/api/v1/users/{}/password", seg(&name)), &req).await?;
            let what = if me.name == name { "password changed; your other sessions ended" } else { "password reset; their sessions and API tokens ended" };
            print_user(c, &u, what);
        }
        UserCmd::Disable { name } => {
            let u: User = api.patch(&format!("/api/v1/users/{}", seg(&name)), &UserUpdate { disabled: Some(true), admin: None }).await?;
            print_user(c, &u, "disabled: their sessions and API tokens ended");
        }
        UserCmd::Enable { name } => {
            let u: User = api.patch(&format!("/api/v1/users/{}", seg(&name)), &UserUpdate { disabled: Some(false), admin: None }).await?;
            print_user(c, &u, "enabled");
        }
        UserCmd::Set { name, admin, .. } => {
            let u: User = api.patch(&format!("/api/v1/users/{}", seg(&name)), &UserUpdate { disabled: None, admin: Some(admin) }).await?;
            print_user(c, &u, if u.admin { "is an admin" } else { "is not an admin" });
        }
        UserCmd::Remove { name } => {
            let _: serde_json::Value = api.delete(&format!("/api/v1/users/{}", seg(&name))).await?;
            if !c.json {
                println!("user {name} removed");
            }
        }
    }
    Ok(0)
}

pub async fn token(action: TokenCmd, c: &ClientOpts) -> anyhow::Result<i32> {
    let api = api(c);
    match action {
        TokenCmd::Create { label, user } => {
            let t: TokenCreated = api.post("/api/v1/tokens", &TokenCreate { label, user }).await?;
            if c.json {
                print_json(&t);
            } else {
                println!("{}", t.token);
                eprintln!("token {} ({}) created: it is shown only now; export KILN_TOKEN=…", t.info.id, t.info.label);
            }
        }
        TokenCmd::List { user, all } => {
            let query = match (user, all) {
                (_, true) => "?all=true".to_string(),
                (Some(u), _) => format!("?user={}", seg(&u)),
                _ => String::new(),
            };
            let ts: Vec<TokenInfo> = api.get(&format!("/api/v1/tokens{query}")).await?;
            if c.json {
                print_json(&ts);
            } else {
                for t in ts {
                    println!("{:>5}  {:<16} {:<32} {}{}", t.id, t.user, t.label, t.created_at, if t.admin { "  admin" } else { "" });
                }
            }
        }
        TokenCmd::Revoke { id } => {
            let _: serde_json::Value = api.delete(&format!("/api/v1/tokens/{id}")).await?;
            if !c.json {
                println!("token {id} revoked");
            }
        }
    }
    Ok(0)
}

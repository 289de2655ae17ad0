//! `kiln user add|list|passwd` (over the API: adding users needs an admin token)
//! and `kiln token create|list|revoke` (your personal API tokens).

use super::{api, print_json};
use crate::api_client::{seg, Exit};
use crate::ClientOpts;
use clap::Subcommand;
use kiln_wire::users::{PasswordChange, TokenCreate, TokenCreated, TokenInfo, User, UserCreate, UserCreated};
use std::io::Read;

#[derive(Subcommand)]
pub enum UserCmd {
    /// Add a user (admins only). Without --password-stdin a password is generated and printed once.
    Add {
        name: String,
        /// Make the user an admin.
        #[arg(long)]
        admin: bool,
        /// Read the password from standard input (first line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users (admins only).
    List,
    /// Set a user's password (yours, or anyone's as an admin); reads it from standard input.
    Passwd { name: String },
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Make a personal API token (printed once; use it as KILN_TOKEN).
    Create {
        /// What the token is for.
        #[arg(long)]
        label: Option<String>,
    },
    /// List your tokens.
    List,
    /// Revoke one of your tokens by id.
    Revoke { id: i64 },
}

fn read_password() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s).map_err(|e| Exit(2, format!("failed to read the password from standard input: {e}")))?;
    let pw = s.lines().next().unwrap_or("").to_string();
    if pw.is_empty() {
        return Err(Exit(2, "no password on standard input".into()).into());
    }
    Ok(pw)
}

pub async fn user(action: UserCmd, c: &ClientOpts) -> anyhow::Result<i32> {
    let api = api(c);
    match action {
        UserCmd::Add { name, admin, password_stdin } => {
            let password = if password_stdin { Some(read_password()?) } else { None };
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
                    println!("{:<24} {:<6} since {}", u.name, if u.admin { "admin" } else { "user" }, u.created_at);
                }
            }
        }
        UserCmd::Passwd { name } => {
            let password = read_password()?;
            let u: User = api.post(&format!("/api/v1/users/{}/password", seg(&name)), &PasswordChange { password }).await?;
            if c.json {
                print_json(&u);
            } else {
                println!("password of {} changed; their sessions ended", u.name);
            }
        }
    }
    Ok(0)
}

pub async fn token(action: TokenCmd, c: &ClientOpts) -> anyhow::Result<i32> {
    let api = api(c);
    match action {
        TokenCmd::Create { label } => {
            let t: TokenCreated = api.post("/api/v1/tokens", &TokenCreate { label }).await?;
            if c.json {
                print_json(&t);
            } else {
                println!("{}", t.token);
                eprintln!("token {} ({}) created: it is shown only now; export KILN_TOKEN=…", t.info.id, t.info.label);
            }
        }
        TokenCmd::List => {
            let ts: Vec<TokenInfo> = api.get("/api/v1/tokens").await?;
            if c.json {
                print_json(&ts);
            } else {
                for t in ts {
                    println!("{:>5}  {:<32} {}{}", t.id, t.label, t.created_at, if t.admin { "  admin" } else { "" });
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

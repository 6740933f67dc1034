//! `daehwa user add|list|rm`: manage the web UI's accounts from the machine itself, with the
//! same `--database` / `--data-dir` as `daehwa serve` (run it beside a running server: the
//! store is safe to share).
//!
//! Passwords come from `--password-stdin` (one line), else a no-echo prompt asked twice on a
//! terminal, else the first line of standard input.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{bail, Context};
use server::store::{Store, StoreError, User};
use server::web::input::{Password, Username};
use server::web::json::iso_time;

#[derive(clap::Args, Debug)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
    /// The conversation store (as for `daehwa serve`) [default: sqlite in the data directory]
    #[arg(long, global = true, env = "DAEHWA_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// Where daehwa keeps its data [default: $XDG_DATA_HOME/daehwa or ~/.local/share/daehwa]
    #[arg(long, global = true, env = "DAEHWA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(clap::Subcommand, Debug)]
pub enum UserCommand {
    /// Create an account
    Add {
        /// The username (letters, digits, . _ - @)
        name: String,
        /// Make it an admin (admins add and remove accounts in the web UI)
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the accounts
    List,
    /// Delete an account and everything it owns
    Rm {
        /// The username
        name: String,
    },
}

pub fn user(a: UserArgs) -> anyhow::Result<()> {
    let url = super::store_url(a.database.as_deref(), a.data_dir.as_deref())?;
    super::secure_data_dir(a.database.as_deref(), a.data_dir.as_deref())?;
    super::block_on(async move {
        let store = Store::connect(&url).await.with_context(|| format!("opening the conversation store {}", super::describe_store(&url)))?;
        let r = match a.command {
            UserCommand::Add { name, admin, password_stdin } => add(&store, &name, admin, password_stdin).await,
            UserCommand::List => list(&store).await,
            UserCommand::Rm { name } => remove(&store, &name).await,
        };
        store.close().await;
        r
    })?
}

/// The web UI's message for a bad username or password, for the terminal.
fn plain(e: server::web::WebError) -> anyhow::Error {
    anyhow::anyhow!("{}", e.body().error.message)
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if !from_stdin && std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password("Password: ").context("reading the password")?;
        let again = rpassword::prompt_password("Password (again): ").context("reading the password")?;
        if p != again {
            bail!("the passwords do not match");
        }
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

async fn add(store: &Store, name: &str, admin: bool, password_stdin: bool) -> anyhow::Result<()> {
    let name = Username::parse(name).map_err(plain)?;
    let password = Password::parse(read_password(password_stdin)?).map_err(plain)?;
    let hash = server::web::secret::hash_password(password.into_inner()).await?;
    let u = store.create_user(name.as_str(), &hash, admin).await.map_err(|e| match e {
        StoreError::Conflict(_) => anyhow::anyhow!("the username `{}` is taken", name.as_str()),
        other => other.into(),
    })?;
    println!("added {}{}", u.username, if u.is_admin { " (admin)" } else { "" });
    Ok(())
}

/// Every account (the operator's listing: no acting admin needed).
async fn all_users(store: &Store) -> anyhow::Result<Vec<User>> {
    Ok(store.all_users().await?)
}

async fn list(store: &Store) -> anyhow::Result<()> {
    let users = all_users(store).await?;
    if users.is_empty() {
        println!("no accounts (the first visitor of the web UI creates the admin, or: daehwa user add NAME --admin)");
        return Ok(());
    }
    let width = users.iter().map(|u| u.username.chars().count()).max().unwrap_or(4).max(4);
    println!("{:<width$}  {:<5}  CREATED", "NAME", "ADMIN");
    for u in users {
        println!("{:<width$}  {:<5}  {}", u.username, if u.is_admin { "yes" } else { "no" }, &iso_time(u.created_at)[..19]);
    }
    Ok(())
}

async fn remove(store: &Store, name: &str) -> anyhow::Result<()> {
    let target = store.user_credentials(name.trim()).await?.with_context(|| format!("no account named `{}`", name.trim()))?.user;
    // The store lets an admin remove others (never themself): act as another admin.
    let users = all_users(store).await?;
    let Some(actor) = users.iter().find(|u| u.is_admin && u.id != target.id) else {
        if target.is_admin {
            bail!("`{}` is the only admin: add another admin first (daehwa user add NAME --admin)", target.username);
        }
        bail!("there is no admin account: add one first (daehwa user add NAME --admin)");
    };
    store.delete_user(actor.id, target.id).await?;
    println!("removed {} and everything it owned", target.username);
    Ok(())
}

//! The `preview` command: validates specs, runs the daemon (`preview serve`), and drives it through its API.
//!
//! Exit codes: 0 success; 1 invalid input (a bad spec, argument or file) or a requested change that did not
//! happen (the deployment rolled back); 2 internal error (a bug, or the daemon failing internally).

mod client;
mod commands;
mod context;
mod exit;
mod output;
mod time;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::commands::deploy::Change;
use crate::context::Context;
use crate::exit::Failure;

/// The gateway answers many small requests from several threads; mimalloc serves their allocations with less
/// work than the system allocator (see `scripts/bench-gateway`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use crate::output::OutputFormat;

/// Full-stack preview environments for every pull request.
#[derive(Parser)]
#[command(name = "preview", version)]
struct Cli {
    /// Output format: human-readable text or JSON for scripts.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,

    /// The daemon's data directory (default: $PREVIEW_HOME, else ~/.preview).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// The project to act on (default: the one ./preview.yaml declares, else the daemon's only project).
    #[arg(long, short = 'p', global = true, env = "PREVIEW_PROJECT")]
    project: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a commented starter `preview.yaml` into DIR (default: the current directory).
    Init {
        /// Directory to write `preview.yaml` into; created if missing.
        dir: Option<PathBuf>,
        /// Replace an existing `preview.yaml`.
        #[arg(long)]
        force: bool,
    },
    /// Check a spec and print a summary of it, or every problem with file:line:column and key path.
    Validate {
        /// The spec file.
        #[arg(long, short = 'f', default_value = "preview.yaml")]
        file: PathBuf,
    },
    /// Run the daemon in the foreground: the store, the deployment engine and the REST API.
    Serve(Box<commands::serve::ServeArgs>),
    /// Register or list projects (a project is registered by uploading its preview.yaml).
    Project {
        #[command(subcommand)]
        action: ProjectAction,
    },
    /// List, show, create, clone or delete environments.
    Env {
        #[command(subcommand)]
        action: EnvAction,
    },
    /// Show what deploying ENV would change, without changing anything.
    Plan {
        /// The environment.
        env: String,
        /// The commit, branch or tag to plan for (default: what the environment follows — the branch or tag it
        /// was made or last deployed with, else the repository's HEAD).
        #[arg(long, value_name = "REF")]
        commit: Option<String>,
    },
    /// Print the Kubernetes objects deploying ENV would apply (Secret values redacted), or write them to a
    /// directory, one file per object: for review, or for a GitOps repository.
    Render {
        /// The environment.
        env: String,
        /// The commit, branch or tag to render for (default: what the environment follows).
        #[arg(long, value_name = "REF")]
        commit: Option<String>,
        /// Write `NN-kind-name.yaml` files into this directory instead of printing one stream (`-o` is the
        /// output format of every command).
        #[arg(long = "directory", short = 'd', value_name = "DIR")]
        output_dir: Option<PathBuf>,
    },
    /// Deploy ENV's current spec (one transaction: it completes or the environment stays as it was).
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Deploy {
        /// The environment.
        #[arg(required = true)]
        env: Option<String>,
        /// Return once the deployment has started instead of following it.
        #[arg(long)]
        no_wait: bool,
        /// The commit, branch or tag to build from; the environment follows it from then on (default: what it
        /// follows — the branch or tag it was made with, else the repository's HEAD).
        #[arg(long, value_name = "REF")]
        commit: Option<String>,
        #[command(subcommand)]
        action: Option<DeployAction>,
    },
    /// Print the URL of ENV's SERVICE (its first, when it has several), e.g. for `curl "$(preview url staging web)"`.
    Url {
        /// The environment.
        env: String,
        /// The service (default: the environment's only public one).
        service: Option<String>,
    },
    /// Print a service's captured output; with -f, keep printing what it writes.
    Logs {
        /// The environment.
        env: String,
        /// The service.
        service: String,
        /// Follow the log until interrupted.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// An environment's databases: list them, or open `psql` on one.
    Db {
        #[command(subcommand)]
        action: DbAction,
    },
    /// Pull requests and their previews.
    Previews {
        #[command(subcommand)]
        action: PreviewsAction,
    },
    /// Webhook deliveries from the project's forge.
    Webhooks {
        #[command(subcommand)]
        action: WebhooksAction,
    },
    /// The Kubernetes clusters environments live on (`preview serve --runtime kubernetes`).
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// The local certificate authority behind the gateway's certificates.
    Ca {
        #[command(subcommand)]
        action: CaAction,
    },
    /// Print the shell completion script for SHELL (`preview completions bash > /etc/bash_completion.d/preview`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: commands::manual::Shell,
    },
    /// Print the manual page (roff), or write one page per command into DIR (`preview.1`, `preview-env.1`, …).
    Man {
        /// Write every page into this directory instead.
        #[arg(long, short = 'd', value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Run the example project on this machine: a daemon with a temporary data directory, `staging` and a
    /// preview cloned from it, their URLs requested over HTTPS; then stop everything.
    Demo {
        /// Leave the daemon and the environments running.
        #[arg(long)]
        keep: bool,
        /// The checkout of this project holding `examples/shop` (default: the repository around the current
        /// directory).
        #[arg(long, value_name = "DIR")]
        repository: Option<PathBuf>,
    },
    /// List ENV's deployments, newest first.
    Deployments {
        /// The environment.
        env: String,
    },
    /// Show one deployment with per-step state and timing, or its journal.
    Deployment {
        #[command(subcommand)]
        action: DeploymentAction,
    },
    /// Set, unset or list variables, or show an environment's effective variables with their provenance.
    Vars {
        #[command(subcommand)]
        action: VarsAction,
    },
    /// Set, unset or list secrets (values are write-only), or rotate the master key.
    Secret {
        #[command(subcommand)]
        action: SecretAction,
    },
}

/// The scope `vars` and `secret` commands use when none is given.
const DEFAULT_SCOPE: &str = "project";

#[derive(Subcommand)]
enum VarsAction {
    /// Set NAME=VALUE at a scope (a value set here wins over the spec's at the same scope).
    Set {
        assignment: String,
        /// `project`, `environment:NAME`, `service:NAME` or `service:NAME@ENVIRONMENT`.
        #[arg(long, default_value = DEFAULT_SCOPE)]
        scope: String,
    },
    /// Remove a variable set through the CLI or API.
    Unset {
        name: String,
        #[arg(long, default_value = DEFAULT_SCOPE)]
        scope: String,
    },
    /// List the variables set through the CLI or API.
    List,
    /// Every effective variable of ENV with the scope and source that won and what it shadowed.
    Show {
        env: String,
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
    },
}

#[derive(Subcommand)]
enum SecretAction {
    /// Set a secret; the value is read from standard input, or from --from-file, never from an argument.
    Set {
        name: String,
        /// `project`, `environment:NAME`, `service:NAME` or `service:NAME@ENVIRONMENT`.
        #[arg(long, default_value = DEFAULT_SCOPE)]
        scope: String,
        /// Read the value from this file instead of standard input.
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
        /// In previews: `share` it, `withhold` it, or `substitute:VARIABLE` to give previews that variable instead.
        #[arg(long, default_value = "share")]
        previews: String,
    },
    /// Remove a secret.
    Unset {
        name: String,
        #[arg(long, default_value = DEFAULT_SCOPE)]
        scope: String,
    },
    /// List secrets: names, scopes, keyed fingerprints and update times — never values.
    List,
    /// Re-encrypt every secret under a new master key, in one transaction.
    RotateKey,
}

#[derive(Subcommand)]
enum ProjectAction {
    /// Validate a spec and register (or replace) its project in the daemon.
    Register {
        /// The spec file.
        #[arg(long, short = 'f', default_value = "preview.yaml")]
        file: PathBuf,
    },
    /// List the registered projects.
    List,
    /// A project's spec file and directory, and where its forge sends webhooks.
    Show {
        /// The project's name.
        name: String,
    },
    /// Delete a project: each of its environments in a deployment of its own, then the project with its
    /// variables, secrets and history.
    Delete {
        /// The project's name (asked for explicitly: this cannot be undone).
        name: String,
    },
}

#[derive(Subcommand)]
enum EnvAction {
    /// List the environments with their last deployment.
    List,
    /// Show an environment's resources and recent deployments.
    Show { env: String },
    /// Create an environment declared in the spec.
    Create {
        env: String,
        /// Return once the deployment has started.
        #[arg(long)]
        no_wait: bool,
        /// The commit, branch or tag to build from (default: the repository's HEAD); later deployments build
        /// that branch's or tag's head.
        #[arg(long, value_name = "REF")]
        commit: Option<String>,
    },
    /// Create NEW as a clone of SOURCE with the spec's preview overrides applied.
    Clone {
        source: String,
        new: String,
        /// Return once the deployment has started.
        #[arg(long)]
        no_wait: bool,
        /// The commit, branch or tag to build from (default: the repository's HEAD); later deployments build
        /// that branch's or tag's head.
        #[arg(long, value_name = "REF")]
        commit: Option<String>,
    },
    /// Delete an environment and everything in it, with the variables and secrets set for it (`--scope
    /// environment:ENV` or `service:S@ENV`) unless --keep-settings.
    Delete {
        env: String,
        /// Return once the deployment has started.
        #[arg(long)]
        no_wait: bool,
        /// Keep the variables and secrets scoped to the environment: a new environment of the same name gets them.
        #[arg(long)]
        keep_settings: bool,
    },
}

#[derive(Subcommand)]
enum DbAction {
    /// ENV's databases: their names on the server, engine, version and where their data came from.
    List { env: String },
    /// Open `psql` on ENV's database SERVICE as its own role (the password in psql's environment, never its
    /// arguments); ARGS after `--` go to psql, e.g. `-- -c 'SELECT count(*) FROM orders'`.
    Psql {
        env: String,
        service: String,
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Open `redis-cli` on ENV's Redis database SERVICE as its own user (the password in redis-cli's
    /// environment, never its arguments); ARGS after `--` go to redis-cli, e.g. `-- HGETALL cart:1`.
    RedisCli {
        env: String,
        service: String,
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build the golden snapshot ENV's database SERVICE was copied from again, from its source's data as it is
    /// now; environments already made keep their data, the next ones are made from the new snapshot.
    Refresh { env: String, service: String },
    /// The golden snapshot ENV's database SERVICE was made from: its source, age, size, rows, masking key version
    /// and warm pool.
    Snapshot { env: String, service: String },
    /// Every golden snapshot of the project, with the environments made from each.
    Snapshots,
    /// Make ENV's database SERVICE again by its clone policy (a copy from the current golden snapshot, the seed
    /// file, or empty): its data and its apps' connections are dropped.
    Reset { env: String, service: String },
}

#[derive(Subcommand)]
enum PreviewsAction {
    /// Every pull request the project knows: its preview's state, commit, age, URLs, place in the queue, and why.
    List,
    /// Ask the forge for the open pull requests now (and try again heads whose deployment failed).
    Sync,
    /// Let a pull request from a fork have a preview at its current head commit; a later push needs a new approval.
    Approve {
        /// The pull request's number.
        number: String,
        /// The head commit reviewed, its whole id; refused when the pull request has moved on since.
        #[arg(long)]
        commit: String,
    },
}

#[derive(Subcommand)]
enum WebhooksAction {
    /// The latest deliveries, newest first: id, event, action, pull request, verdict and why; and the URL the forge
    /// sends them to.
    List,
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Register a further cluster, for environments whose spec names it (`cluster:`); its kubeconfig must hold
    /// its credentials inline (`kubectl config view --flatten --minify` writes one), and is sealed in the store.
    Add {
        /// The cluster's name in specs (a DNS label).
        name: String,
        /// The kubeconfig file.
        #[arg(long, value_name = "FILE")]
        kubeconfig: PathBuf,
        /// A context of the kubeconfig [default: its current context]
        #[arg(long, value_name = "NAME")]
        context: Option<String>,
    },
    /// The clusters, their servers and the environments on each.
    List,
    /// Forget a registered cluster no environment lives on.
    Remove { name: String },
    /// The server's version, which permissions the credentials lack (asked of the API server for each verb and
    /// kind), the ingress, storage and snapshot classes, the custom resources preview can use, and what is missing.
    Check {
        /// The cluster [default: the daemon's own]
        #[arg(default_value = "default")]
        name: String,
    },
}

#[derive(Subcommand)]
enum CaAction {
    /// Write the CA certificate (PEM) to FILE, or print it, for browsers' and curl's trust stores.
    Export {
        /// The file to write; standard output when absent.
        #[arg(long, short = 'f', value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DeployAction {
    /// Stop ENV's running deployment and roll it back.
    Cancel { env: String },
}

#[derive(Subcommand)]
enum DeploymentAction {
    /// The deployment's outcome and each step's state and duration.
    Show { id: String },
    /// The deployment's journal, entry by entry.
    Logs { id: String },
    /// Give up on a deployment that cannot finish (its rollback, or past its point of no return its completion,
    /// keeps failing); its environment is marked as needing attention, with what may be left.
    Abandon { id: String },
}

fn main() -> ExitCode {
    exit::exit_with_2_on_panic();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // Help and version are successes; anything else is a bad argument, which is invalid input.
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let output = cli.output;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(output),
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let data_dir = context::data_dir(cli.data_dir);
    if !matches!(cli.command, Command::Serve(_) | Command::Demo { .. }) {
        end_quietly_on_a_closed_pipe();
    }
    match cli.command {
        Command::Init { dir, force } => commands::init::run(dir, force, cli.output),
        Command::Validate { file } => commands::validate::run(&file, cli.output),
        Command::Serve(args) => commands::serve::run(data_dir, *args),
        Command::Demo { keep, repository } => commands::demo::run(repository, keep),
        Command::Completions { shell } => commands::manual::completions(shell, Cli::command()),
        Command::Man { dir } => commands::manual::man(Cli::command(), dir.as_deref()),
        command => client_command(command, data_dir, cli.project, cli.output),
    }
}

/// `preview env list | head` ends like any Unix tool when `head` stops reading, instead of reporting a failed
/// write. Not for the daemon, whose sockets' peers may go away at any time.
fn end_quietly_on_a_closed_pipe() {
    preview_isolation::signals::end_on_closed_pipe();
}

/// Commands that talk to the daemon, on a small async runtime of their own.
fn client_command(
    command: Command,
    data_dir: PathBuf,
    project: Option<String>,
    output: OutputFormat,
) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::internal(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        if let Command::Ca {
            action: CaAction::Export { file },
        } = &command
        {
            let client = client::Client::from_data_dir(&data_dir)?;
            return commands::logs::export_ca(&client, file.as_deref(), output).await;
        }
        if let Command::Cluster { action } = &command {
            let client = client::Client::from_data_dir(&data_dir)?;
            return match action {
                ClusterAction::Check { name } => {
                    commands::clusters::check(&client, name, output).await
                }
                ClusterAction::Add {
                    name,
                    kubeconfig,
                    context,
                } => {
                    commands::clusters::add(&client, name, kubeconfig, context.as_deref(), output)
                        .await
                }
                ClusterAction::List => commands::clusters::list(&client, output).await,
                ClusterAction::Remove { name } => {
                    commands::clusters::remove(&client, name, output).await
                }
            };
        }
        if let Command::Project { action } = &command {
            let client = client::Client::from_data_dir(&data_dir)?;
            return match action {
                ProjectAction::Register { file } => {
                    commands::project::register(&client, file, output).await
                }
                ProjectAction::List => commands::project::list(&client, output).await,
                ProjectAction::Show { name } => {
                    commands::project::show(&client, name, output).await
                }
                ProjectAction::Delete { name } => {
                    let context = Context::new(data_dir, Some(name.clone()), output).await?;
                    commands::project::delete(&context).await
                }
            };
        }
        let context = Context::new(data_dir, project, output).await?;
        match command {
            Command::Env { action } => match action {
                EnvAction::List => commands::environments::list(&context).await,
                EnvAction::Show { env } => commands::environments::show(&context, &env).await,
                EnvAction::Create {
                    env,
                    no_wait,
                    commit,
                } => {
                    commands::deploy::start(
                        &context,
                        Change::Create(&env, commit.as_deref()),
                        !no_wait,
                    )
                    .await
                }
                EnvAction::Clone {
                    source,
                    new,
                    no_wait,
                    commit,
                } => {
                    commands::deploy::start(
                        &context,
                        Change::Clone {
                            source: &source,
                            name: &new,
                            commit: commit.as_deref(),
                        },
                        !no_wait,
                    )
                    .await
                }
                EnvAction::Delete {
                    env,
                    no_wait,
                    keep_settings,
                } => {
                    commands::deploy::start(&context, Change::Delete(&env, keep_settings), !no_wait)
                        .await
                }
            },
            Command::Render {
                env,
                commit,
                output_dir,
            } => {
                commands::environments::render(
                    &context,
                    &env,
                    commit.as_deref(),
                    output_dir.as_deref(),
                )
                .await
            }
            Command::Plan { env, commit } => {
                commands::environments::plan(&context, &env, commit.as_deref()).await
            }
            Command::Deploy {
                action: Some(DeployAction::Cancel { env }),
                ..
            } => commands::deploy::cancel(&context, &env).await,
            Command::Deploy {
                env: Some(env),
                no_wait,
                commit,
                ..
            } => {
                commands::deploy::start(&context, Change::Update(&env, commit.as_deref()), !no_wait)
                    .await
            }
            Command::Logs {
                env,
                service,
                follow,
            } => commands::logs::run(&context, &env, &service, follow).await,
            Command::Db { action } => match action {
                DbAction::List { env } => commands::databases::list(&context, &env).await,
                DbAction::Psql { env, service, args } => {
                    commands::databases::psql(&context, &env, &service, &args).await
                }
                DbAction::RedisCli { env, service, args } => {
                    commands::databases::redis_cli(&context, &env, &service, &args).await
                }
                DbAction::Refresh { env, service } => {
                    commands::databases::action(&context, &env, &service, "refresh").await
                }
                DbAction::Reset { env, service } => {
                    commands::databases::action(&context, &env, &service, "reset").await
                }
                DbAction::Snapshot { env, service } => {
                    commands::databases::snapshot(&context, &env, &service).await
                }
                DbAction::Snapshots => commands::databases::snapshots(&context).await,
            },
            Command::Previews { action } => match action {
                PreviewsAction::List => commands::previews::list(&context).await,
                PreviewsAction::Sync => commands::previews::sync(&context).await,
                PreviewsAction::Approve { number, commit } => {
                    commands::previews::approve(&context, &number, &commit).await
                }
            },
            Command::Webhooks {
                action: WebhooksAction::List,
            } => commands::webhooks::list(&context).await,
            Command::Url { env, service } => {
                commands::environments::url(&context, &env, service.as_deref()).await
            }
            Command::Deployments { env } => {
                commands::environments::deployments(&context, &env).await
            }
            Command::Vars { action } => match action {
                VarsAction::Set { assignment, scope } => {
                    commands::variables::set(&context, &assignment, &scope).await
                }
                VarsAction::Unset { name, scope } => {
                    commands::variables::unset(&context, &name, &scope, false).await
                }
                VarsAction::List => commands::variables::list(&context).await,
                VarsAction::Show { env, service } => {
                    commands::variables::show(&context, &env, service.as_deref()).await
                }
            },
            Command::Secret { action } => match action {
                SecretAction::Set {
                    name,
                    scope,
                    from_file,
                    previews,
                } => {
                    commands::variables::set_secret(
                        &context,
                        &name,
                        &scope,
                        from_file.as_deref(),
                        &previews,
                    )
                    .await
                }
                SecretAction::Unset { name, scope } => {
                    commands::variables::unset(&context, &name, &scope, true).await
                }
                SecretAction::List => commands::variables::list_secrets(&context).await,
                SecretAction::RotateKey => commands::variables::rotate_key(&context).await,
            },
            Command::Deployment { action } => match action {
                DeploymentAction::Show { id } => {
                    commands::environments::deployment_show(&context, &id).await
                }
                DeploymentAction::Logs { id } => {
                    commands::environments::deployment_logs(&context, &id).await
                }
                DeploymentAction::Abandon { id } => {
                    commands::environments::deployment_abandon(&context, &id).await
                }
            },
            _ => Err(Failure::invalid(
                "this command needs more arguments; see `preview --help`",
            )),
        }
    })
}

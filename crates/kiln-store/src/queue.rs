//! The job queue: claims with leases, heartbeats that renew them, finishing with
//! fencing by attempt, requeue of expired leases, cancel, and the DAG step that
//! readies or skips dependents and derives the build's status.
//!
//! Invariant: a job is finished at most once. Every write names the attempt it
//! belongs to, and only the job's current attempt of a running job may write.

use crate::hold::{held_by, why_not_held, AgentAttempt};
use crate::rows::{json_list, json_map, to_json};
use crate::{now_ms, AgentRow, Result, Store, StoreError};
use kiln_core::state::{derive_build_status, resolve_dependents, BuildStatus, JobStatus};
use sqlx::{Any, Row, Transaction};
use std::collections::BTreeMap;

/// A job to insert when a build is expanded.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub key: String,
    pub name: String,
    /// The assignment template (JSON) handed to the agent at claim time.
    pub spec: String,
    pub requires: BTreeMap<String, String>,
    pub needs: Vec<String>,
    pub max_attempts: i64,
}

#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: i64,
    pub build_id: i64,
    pub key: String,
    pub name: String,
    pub status: JobStatus,
    pub ready: bool,
    pub spec: String,
    pub requires: BTreeMap<String, String>,
    pub needs: Vec<String>,
    pub attempt: i64,
    pub max_attempts: i64,
    pub agent_name: Option<String>,
    pub lease_until: Option<i64>,
    pub cancel_requested: bool,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    pub created_at: i64,
    pub queued_at: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// The result of a successful claim.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub job: JobRow,
    /// Its build's project, and whether the build's steps get the project's secrets.
    pub project_id: i64,
    pub with_secrets: bool,
    /// The project's secrets when the build's steps get them (read with the claim), else none.
    pub secrets: Vec<(String, String)>,
}

/// What finishing a job changed.
#[derive(Debug, Clone)]
pub struct FinishOutcome {
    pub build_id: i64,
    /// The build's status after the change, and whether it just became final.
    pub build_status: BuildStatus,
    pub build_finished: bool,
    /// Some dependents became ready: wake the agents.
    pub readied: bool,
    /// The same finish had already been recorded (a retried call).
    pub repeated: bool,
    /// The build's project, and how long the job ran (first start to this finish), for the
    /// events the caller sends.
    pub project: String,
    pub duration_ms: Option<i64>,
    /// Some project's recorded triggers ([`crate::TRIGGERS_PREFIX`]) may name this project
    /// upstream: a test that never misses one (it may match more, the name being a `LIKE`
    /// pattern), read with the finish so that builds nothing follows cost no further read.
    pub named_upstream: bool,
}

/// A running job whose lease ran out.
#[derive(Debug, Clone)]
pub struct LeaseExpiry {
    pub job_id: i64,
    pub build_id: i64,
    pub attempt: i64,
    pub agent: String,
    pub requeued: bool,
}

/// What one ready job asks of the agent that takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    pub requires: BTreeMap<String, String>,
    pub project: String,
}

impl Demand {
    /// Whether `agent` may take this job: the one test a claim applies.
    pub fn fits(&self, agent: &AgentRow) -> bool {
        kiln_core::labels::matches(&self.requires, &agent.labels) && agent.may_serve(&self.project)
    }
}

/// The queue is read in pages of this many jobs, at most this many pages per claim.
const CLAIM_PAGE: i64 = 32;
const CLAIM_PAGES: usize = 16;
/// The first page a claim reads on SQLite (whole pages follow when none of it fits).
const FIRST_PAGE: i64 = 4;
/// The most ready jobs a claim considers.
pub const CLAIM_HORIZON: usize = CLAIM_PAGE as usize * CLAIM_PAGES;

const COLS: &str = "id, build_id, job_key, name, status, ready, spec, requires, needs, attempt, max_attempts, agent_name, \
lease_until, cancel_requested, exit_code, reason, created_at, queued_at, started_at, finished_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<JobRow> {
    Ok(JobRow {
        id: r.try_get("id")?,
        build_id: r.try_get("build_id")?,
        key: r.try_get("job_key")?,
        name: r.try_get("name")?,
        status: crate::rows::job_status(r, "status")?,
        ready: r.try_get::<i64, _>("ready")? != 0,
        spec: r.try_get("spec")?,
        requires: json_map(&r.try_get::<String, _>("requires")?)?,
        needs: json_list(&r.try_get::<String, _>("needs")?)?,
        attempt: r.try_get("attempt")?,
        max_attempts: r.try_get("max_attempts")?,
        agent_name: r.try_get("agent_name")?,
        lease_until: r.try_get("lease_until")?,
        cancel_requested: r.try_get::<i64, _>("cancel_requested")? != 0,
        exit_code: r.try_get("exit_code")?,
        reason: r.try_get("reason")?,
        created_at: r.try_get("created_at")?,
        queued_at: r.try_get("queued_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

/// Jobs one `INSERT` writes (10 parameters each, far under either backend's limit).
const INSERT_AT_ONCE: usize = 500;

/// Insert a build's jobs, in their order (their ids follow it: the claim order), a statement
/// per [`INSERT_AT_ONCE`] jobs.
pub(crate) async fn insert_jobs(tx: &mut Transaction<'_, Any>, build_id: i64, jobs: &[NewJob]) -> Result<()> {
    let now = now_ms();
    for chunk in jobs.chunks(INSERT_AT_ONCE) {
        let values = (0..chunk.len())
            .map(|i| {
                let p = |n: usize| format!("${}", 10 * i + n);
                format!("({}, {}, {}, 'queued', {}, {}, {}, {}, {}, {}, {})", p(1), p(2), p(3), p(4), p(5), p(6), p(7), p(8), p(9), p(10))
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("INSERT INTO jobs (build_id, job_key, name, status, ready, spec, requires, needs, max_attempts, created_at, queued_at) VALUES {values}");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for j in chunk {
            let ready = j.needs.is_empty();
            q = q
                .bind(build_id)
                .bind(j.key.clone())
                .bind(j.name.clone())
                .bind(ready as i64)
                .bind(j.spec.clone())
                .bind(to_json(&j.requires))
                .bind(to_json(&j.needs))
                .bind(j.max_attempts)
                .bind(now)
                .bind(if ready { Some(now) } else { None });
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Hold the job's row for the rest of the transaction (PostgreSQL: a row lock, so
/// two servers deciding about one job take turns; SQLite's write lock does this already).
async fn lock_job(tx: &mut Transaction<'_, Any>, backend: crate::Backend, job_id: i64) -> Result<()> {
    if backend == crate::Backend::Postgres {
        sqlx::query("UPDATE jobs SET lease_until = lease_until WHERE id = $1").bind(job_id).execute(&mut **tx).await?;
    }
    Ok(())
}

/// PostgreSQL: one settle of a build at a time. Two of its jobs finishing at once would
/// otherwise each read the other as still running, and the build would stay running for ever.
/// (Every writer takes its jobs' rows before the build's, so this cannot deadlock; SQLite's
/// write lock already serializes.)
async fn lock_build(tx: &mut Transaction<'_, Any>, backend: crate::Backend, build_id: i64) -> Result<()> {
    if backend == crate::Backend::Postgres {
        sqlx::query("SELECT id FROM builds WHERE id = $1 FOR UPDATE").bind(build_id).fetch_optional(&mut **tx).await?;
    }
    Ok(())
}

/// What a settle does besides deriving the build's status.
enum Settle {
    /// Only settle (a cancel).
    Only,
    /// A job ended: first report the tests of finished groups no one ran
    /// (`testqueue::report_unrun`), when the build has test groups left to report.
    AfterJobEnd,
    /// [`Settle::AfterJobEnd`] for a finish that has locked the build and read it
    /// ([`FINISH_READ`]), the finished job's new status put in.
    Read(BuildState),
}

/// A build as settling reads it (columns `build_status`, `unreported`, `job_key`, `needs`,
/// `job_status`, `ready`: [`SETTLE_READ`], [`FINISH_READ`]).
struct BuildState {
    status: BuildStatus,
    /// It has test groups left to report.
    unreported: bool,
    /// (key, needs, status) of each job.
    jobs: Vec<(String, Vec<String>, JobStatus)>,
    /// Jobs marked ready already.
    ready: std::collections::HashSet<String>,
}

impl BuildState {
    /// None when the rows hold no build (no row) or no job (one row of NULLs).
    fn of(rows: &[sqlx::any::AnyRow]) -> Result<Option<BuildState>> {
        let Some(first) = rows.first() else { return Ok(None) };
        let mut b = BuildState {
            status: crate::rows::build_status(first, "build_status")?,
            unreported: first.try_get::<i64, _>("unreported")? != 0,
            jobs: Vec::with_capacity(rows.len()),
            ready: Default::default(),
        };
        for r in rows {
            let Some(key) = r.try_get::<Option<String>, _>("job_key")? else { continue };
            let st = crate::rows::job_status(r, "job_status")?;
            if r.try_get::<i64, _>("ready")? != 0 {
                b.ready.insert(key.clone());
            }
            b.jobs.push((key, json_list(&r.try_get::<String, _>("needs")?)?, st));
        }
        Ok((!b.jobs.is_empty()).then_some(b))
    }
}

/// Whether build `build` (an SQL expression) has test groups left to report.
fn unreported(build: &str) -> String {
    format!("CAST(CASE WHEN EXISTS (SELECT 1 FROM test_groups g WHERE g.build_id = {build} AND g.state = 'ready') THEN 1 ELSE 0 END AS BIGINT)")
}

/// Build `$1` as settling reads it, in one query: its status, whether it has test groups left
/// to report, its jobs (none: one row of NULLs).
fn settle_read() -> &'static str {
    static Q: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    Q.get_or_init(|| {
        format!(
            // `$1`, not `b.id`: not correlated, so computed once.
            "SELECT b.status AS build_status, {} AS unreported, j.job_key, j.needs, j.status AS job_status, j.ready \
             FROM builds b LEFT JOIN jobs j ON j.build_id = b.id WHERE b.id = $1",
            unreported("$1")
        )
    })
}

/// A finish's read of job `$1` as attempt `$2` of agent `$3` (no row: not held): the job (its
/// build, status, key, start), its build's status and project, the log held, whether some
/// project's triggers (kv keys from `$4` to `$5`) may name the project upstream — and, a row
/// each, the build's jobs as settling reads them ([`BuildState`]). The job's own part is read
/// once (`MATERIALIZED`), not for each of its build's jobs.
fn finish_read() -> &'static str {
    static Q: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    Q.get_or_init(|| {
        format!(
            "WITH f AS MATERIALIZED (SELECT j.build_id, j.status, j.job_key AS own_key, j.started_at, b.status AS build_status, p.name AS project, \
             COALESCE(a.log_len, 0) AS log_len, {} AS unreported, \
             CAST(CASE WHEN EXISTS (SELECT 1 FROM kv WHERE k >= $4 AND k < $5 AND v LIKE '%\"' || p.name || '\"%') THEN 1 ELSE 0 END AS BIGINT) AS named_upstream \
             FROM jobs j JOIN builds b ON b.id = j.build_id JOIN projects p ON p.id = b.project_id \
             LEFT JOIN attempts a ON a.job_id = j.id AND a.attempt = j.attempt \
             WHERE j.id = $1 AND j.attempt = $2 AND j.agent_name = $3) \
             SELECT f.*, s.job_key, s.needs, s.status AS job_status, s.ready FROM f JOIN jobs s ON s.build_id = f.build_id",
            unreported("j.build_id")
        )
    })
}

/// Ready or skip dependents until nothing changes, then store the build's derived status.
/// Returns (status, became_final, readied_any); None for a build with no jobs, or none at all
/// (nothing written).
async fn settle_build(tx: &mut Transaction<'_, Any>, backend: crate::Backend, build_id: i64, what: Settle) -> Result<Option<(BuildStatus, bool, bool)>> {
    let (mut known, mut report) = match what {
        Settle::Only => (None, false),
        Settle::AfterJobEnd => (None, true),
        Settle::Read(b) => (Some(b), true),
    };
    if known.is_none() {
        lock_build(tx, backend, build_id).await?;
    }
    let now = now_ms();
    let mut readied = false;
    loop {
        let build = match known.take() {
            Some(b) => b,
            None => match BuildState::of(&sqlx::query(sqlx::AssertSqlSafe(settle_read())).bind(build_id).fetch_all(&mut **tx).await?)? {
                Some(b) => b,
                None => return Ok(None),
            },
        };
        // Test groups are reported before the status is derived (their reports change no job).
        if std::mem::take(&mut report) && build.unreported {
            crate::testqueue::report_unrun(tx, build_id).await?;
        }
        let BuildState { status: old, jobs, ready: ready_now, .. } = build;
        let (ready, skip) = resolve_dependents(&jobs);
        let ready: Vec<_> = ready.into_iter().filter(|k| !ready_now.contains(k)).collect();
        if ready.is_empty() && skip.is_empty() {
            let statuses: Vec<JobStatus> = jobs.iter().map(|j| j.2).collect();
            let status = derive_build_status(&statuses);
            let final_ = status.is_final();
            let became_final = final_ && old != status;
            // Unchanged and not final (one of several jobs ended): its row already says so.
            if old == status && !final_ {
                return Ok(Some((old, false, readied)));
            }
            sqlx::query(
                "UPDATE builds SET status = $1, \
                 started_at = CASE WHEN started_at IS NULL AND $2 = 1 THEN $3 ELSE started_at END, \
                 finished_at = CASE WHEN $4 = 1 THEN COALESCE(finished_at, $3) ELSE NULL END WHERE id = $5",
            )
            .bind(status.as_str())
            .bind((status != kiln_core::state::BuildStatus::Queued) as i64)
            .bind(now)
            .bind(final_ as i64)
            .bind(build_id)
            .execute(&mut **tx)
            .await?;
            return Ok(Some((status, became_final, readied)));
        }
        for key in &ready {
            sqlx::query("UPDATE jobs SET ready = 1, queued_at = $1 WHERE build_id = $2 AND job_key = $3 AND status = 'queued'")
                .bind(now)
                .bind(build_id)
                .bind(key)
                .execute(&mut **tx)
                .await?;
            readied = true;
        }
        for key in &skip {
            sqlx::query(
                "UPDATE jobs SET status = 'skipped', reason = 'a job it needs did not pass', finished_at = $1 \
                 WHERE build_id = $2 AND job_key = $3 AND status = 'queued'",
            )
            .bind(now)
            .bind(build_id)
            .bind(key)
            .execute(&mut **tx)
            .await?;
        }
    }
}

impl Store {
    pub async fn job(&self, id: i64) -> Result<JobRow> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM jobs WHERE id = $1")))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("job {id}")))?;
        from_row(&row)
    }

    pub async fn jobs_of_build(&self, build_id: i64) -> Result<Vec<JobRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM jobs WHERE build_id = $1 ORDER BY id")))
            .bind(build_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Jobs waiting in the queue (ready and not yet claimed), oldest first.
    pub async fn queued_jobs(&self, limit: i64) -> Result<Vec<JobRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM jobs WHERE status = 'queued' AND ready = 1 ORDER BY id LIMIT $1"
        )))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Jobs an agent currently holds.
    pub async fn running_jobs_of_agent(&self, agent: &str) -> Result<Vec<JobRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM jobs WHERE status = 'running' AND agent_name = $1 ORDER BY id"
        )))
        .bind(agent)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// A taken job with what its queue row (`c`) said of its build, and its project's secrets
    /// from `settings` (the project's settings, taken with it when its build gets them).
    fn claimed(&self, job: JobRow, c: &sqlx::any::AnyRow, settings: Option<String>) -> Result<Claimed> {
        let project: String = c.try_get("project")?;
        let secrets = match settings {
            Some(text) => crate::projects::open_settings(self.secret_key(), &project, &text)?.secrets.unwrap_or_default().into_iter().collect(),
            None => Vec::new(),
        };
        Ok(Claimed { job, project_id: c.try_get("project_id")?, with_secrets: c.try_get::<i64, _>("with_secrets")? != 0, secrets })
    }

    /// Claim the oldest ready job this agent's labels satisfy, of a project it may serve
    /// (its enrolment's project limit). The claim takes a new attempt number and a lease
    /// that heartbeats must renew.
    pub async fn claim(&self, agent: &AgentRow, lease_ms: i64) -> Result<Option<Claimed>> {
        // Read the queue a page at a time, oldest first: the first page usually
        // has a job this agent can run, however deep the queue is. On SQLite the write turn is
        // held from the read to the write, so the page is never stale: hundreds of claims
        // woken together take one job each instead of all trying the oldest ones in turn.
        if self.backend() == crate::Backend::Postgres {
            return self.claim_locked(agent, lease_ms).await;
        }
        let turn = self.write_turn().await;
        let (mut after, mut considered) = (0i64, 0i64);
        while considered < CLAIM_HORIZON as i64 {
            // The oldest job usually fits: a first page of a few rows, whole pages after it.
            let page = if considered == 0 { FIRST_PAGE } else { CLAIM_PAGE.min(CLAIM_HORIZON as i64 - considered) };
            let candidates = sqlx::query(
                "SELECT j.id, j.requires, p.name AS project, b.project_id, b.with_secrets FROM jobs j JOIN builds b ON b.id = j.build_id JOIN projects p ON p.id = b.project_id \
                 WHERE j.status = 'queued' AND j.ready = 1 AND j.id > $1 ORDER BY j.id LIMIT $2",
            )
                .bind(after)
                .bind(page)
                .fetch_all(self.pool())
                .await?;
            considered += page;
            let Some(last) = candidates.last() else { break };
            after = last.try_get("id")?;
            if let Some(claimed) = self.claim_first(agent, lease_ms, &candidates, turn.is_some()).await? {
                return Ok(Some(claimed));
            }
        }
        Ok(None)
    }

    /// What the ready jobs a claim would consider ask for, oldest first: each one's required
    /// labels and project, at most `limit` (and never past the claim's own horizon). The server
    /// wakes as many waiting agents as these let take a job (`kiln_server::waiters`).
    pub async fn ready_demands(&self, limit: usize) -> Result<Vec<Demand>> {
        let rows = sqlx::query(
            "SELECT j.requires, p.name AS project FROM jobs j JOIN builds b ON b.id = j.build_id JOIN projects p ON p.id = b.project_id \
             WHERE j.status = 'queued' AND j.ready = 1 ORDER BY j.id LIMIT $1",
        )
        .bind(limit.min(CLAIM_HORIZON) as i64)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok(Demand { requires: json_map(&r.try_get::<String, _>("requires")?)?, project: r.try_get("project")? })).collect()
    }

    /// Try the candidates in order; the first one this agent may run and can take wins.
    /// `turn_held`: the caller holds the write turn already.
    async fn claim_first(&self, a: &AgentRow, lease_ms: i64, candidates: &[sqlx::any::AnyRow], turn_held: bool) -> Result<Option<Claimed>> {
        for c in candidates {
            let demand = Demand { requires: json_map(&c.try_get::<String, _>("requires")?)?, project: c.try_get("project")? };
            if !demand.fits(a) {
                continue;
            }
            let id: i64 = c.try_get("id")?;
            let _w = if turn_held { None } else { self.write_turn().await };
            let mut tx = self.begin_write().await?;
            // Roll back at once when nothing is taken, while we hold the write turn: a
            // transaction left to roll back later would keep SQLite's write lock.
            match take(&mut tx, a, id, lease_ms).await? {
                Taken::Job(job, settings) => {
                    tx.commit().await?;
                    return Ok(Some(self.claimed(job, c, settings)?));
                }
                // Another agent took it.
                Taken::Gone => tx.rollback().await?,
                Taken::NotAgent => {
                    tx.rollback().await?;
                    return Err(not_agent(a));
                }
            }
        }
        Ok(None)
    }

    /// PostgreSQL: each page of the queue is read with its rows locked, skipping rows another
    /// claim has locked, so claims running at once take different jobs and none is stale.
    async fn claim_locked(&self, a: &AgentRow, lease_ms: i64) -> Result<Option<Claimed>> {
        let mut after = 0i64;
        for _page in 0..CLAIM_PAGES {
            let mut tx = self.begin_write().await?;
            let candidates = sqlx::query(
                "SELECT j.id, j.requires, p.name AS project, b.project_id, b.with_secrets FROM jobs j JOIN builds b ON b.id = j.build_id JOIN projects p ON p.id = b.project_id \
                 WHERE j.status = 'queued' AND j.ready = 1 AND j.id > $1 ORDER BY j.id LIMIT $2 FOR UPDATE OF j SKIP LOCKED",
            )
            .bind(after)
            .bind(CLAIM_PAGE)
            .fetch_all(&mut *tx)
            .await?;
            let Some(last) = candidates.last() else {
                tx.rollback().await?;
                break;
            };
            after = last.try_get("id")?;
            for c in &candidates {
                let demand = Demand { requires: json_map(&c.try_get::<String, _>("requires")?)?, project: c.try_get("project")? };
                if !demand.fits(a) {
                    continue;
                }
                match take(&mut tx, a, c.try_get("id")?, lease_ms).await? {
                    Taken::Job(job, settings) => {
                        tx.commit().await?;
                        return Ok(Some(self.claimed(job, c, settings)?));
                    }
                    Taken::Gone => {}
                    Taken::NotAgent => {
                        tx.rollback().await?;
                        return Err(not_agent(a));
                    }
                }
            }
            tx.rollback().await?;
        }
        Ok(None)
    }
}


/// What taking a queued job came to.
enum Taken {
    /// Taken, with its project's stored settings when its build's steps get its secrets.
    Job(JobRow, Option<String>),
    /// No longer queued: another agent took it, or it was cancelled.
    Gone,
    /// The agent no longer has the token it called with (revoked, or enrolled again).
    NotAgent,
}

fn not_agent(a: &AgentRow) -> StoreError {
    StoreError::Refused(format!("agent {:?} no longer has the token it called with (revoked, or enrolled again); enrol it again", a.name))
}

/// Take the queued job `id` for agent `a` in `tx`: the agent seen (only while it still has the
/// token its row was read with), the job running with a new attempt and its lease, the build
/// running.
async fn take(tx: &mut Transaction<'static, Any>, a: &AgentRow, id: i64, lease_ms: i64) -> Result<Taken> {
    let agent = a.name.as_str();
    let now = now_ms();
    // The agent is seen in the same write, not in one of its own; a revoke or a new enrolment
    // under its name since its row was read hands it nothing.
    let me = sqlx::query("UPDATE agents SET last_seen = $1 WHERE id = $2 AND token_hash = $3")
        .bind(now)
        .bind(a.id)
        .bind(&a.token_hash)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if me != 1 {
        return Ok(Taken::NotAgent);
    }
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE jobs SET status = 'running', attempt = attempt + 1, agent_name = $1, lease_until = $2, \
         started_at = COALESCE(started_at, $3) WHERE id = $4 AND status = 'queued' AND ready = 1 RETURNING {COLS}, \
         (SELECT p.settings FROM builds b JOIN projects p ON p.id = b.project_id WHERE b.id = jobs.build_id AND b.with_secrets = 1) AS secret_settings"
    )))
    .bind(agent)
    .bind(now + lease_ms)
    .bind(now)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(Taken::Gone) };
    let job = from_row(&row)?;
    let settings: Option<String> = row.try_get("secret_settings")?;
    sqlx::query(
        "INSERT INTO attempts (job_id, attempt, agent_name, status, started_at) VALUES ($1, $2, $3, 'running', $4) \
         ON CONFLICT (job_id, attempt) DO NOTHING",
    )
    .bind(job.id)
    .bind(job.attempt)
    .bind(agent)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE builds SET status = 'running', started_at = COALESCE(started_at, $1) WHERE id = $2 AND status = 'queued'")
        .bind(now)
        .bind(job.build_id)
        .execute(&mut **tx)
        .await?;
    Ok(Taken::Job(job, settings))
}

impl Store {

    /// Renew the leases of the jobs an agent says it runs. Returns the ones it
    /// must stop: no longer its current attempt, or cancelled.
    pub async fn renew_leases(&self, agent: &str, jobs: &[(i64, i64)], lease_ms: i64) -> Result<Vec<(i64, i64)>> {
        let mut stop = Vec::new();
        let _w = self.write_turn().await;
        let until = now_ms() + lease_ms;
        for &(job_id, attempt) in jobs {
            let r = sqlx::query(
                "UPDATE jobs SET lease_until = $1 WHERE id = $2 AND attempt = $3 AND agent_name = $4 AND status = 'running' \
                 RETURNING cancel_requested",
            )
            .bind(until)
            .bind(job_id)
            .bind(attempt)
            .bind(agent)
            .fetch_optional(self.pool())
            .await?;
            match r {
                Some(r) if r.try_get::<i64, _>("cancel_requested")? == 0 => {}
                _ => stop.push((job_id, attempt)),
            }
        }
        Ok(stop)
    }

    /// Push every running lease to at least now + `lease_ms` (at server start:
    /// agents kept working while the server was down). Returns how many.
    pub async fn extend_running_leases(&self, lease_ms: i64) -> Result<u64> {
        let _w = self.write_turn().await;
        let until = now_ms() + lease_ms;
        let n = sqlx::query("UPDATE jobs SET lease_until = $1 WHERE status = 'running' AND lease_until < $1")
            .bind(until)
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(n)
    }

    /// Running jobs of an agent that it must stop because they were cancelled.
    pub async fn cancelled_jobs_of_agent(&self, agent: &str) -> Result<Vec<(i64, i64)>> {
        let rows = sqlx::query("SELECT id, attempt FROM jobs WHERE status = 'running' AND agent_name = $1 AND cancel_requested = 1")
            .bind(agent)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("attempt")?))).collect()
    }

    /// Of the (job, attempt) pairs an agent runs, those that are no longer its current running attempt.
    pub async fn stale_attempts(&self, agent: &str, jobs: &[(i64, i64)]) -> Result<Vec<(i64, i64)>> {
        let mut out = Vec::new();
        for &(job_id, attempt) in jobs {
            let cur: Option<i64> = sqlx::query_scalar("SELECT attempt FROM jobs WHERE id = $1 AND status = 'running' AND agent_name = $2")
                .bind(job_id)
                .bind(agent)
                .fetch_optional(self.pool())
                .await?;
            if cur != Some(attempt) {
                out.push((job_id, attempt));
            }
        }
        Ok(out)
    }

    /// Check that `agent` holds job `job_id` in its current, running `attempt`.
    pub async fn check_held(&self, by: AgentAttempt<'_>) -> Result<()> {
        self.held_build(by).await.map(drop)
    }

    /// [`Store::check_held`] that answers the job's build.
    pub async fn held_build(&self, by: AgentAttempt<'_>) -> Result<i64> {
        let mut conn = self.pool().acquire().await?;
        held_by(&mut conn, by).await
    }

    /// Finish the current attempt of a job, from the agent that holds it, once the server
    /// holds `log_len` bytes of its log. A repeat of a finish already recorded answers as
    /// before; any other write from a stale attempt or another agent is refused.
    pub async fn finish_job(&self, by: AgentAttempt<'_>, log_len: u64, status: JobStatus, exit_code: Option<i64>, reason: Option<&str>) -> Result<FinishOutcome> {
        self.finish_job_with_log(by, None, log_len, status, exit_code, reason).await
    }

    /// [`Store::finish_job`] that first appends `rest` (bytes of the log from an offset, as
    /// [`Store::append_log`] would) in the same transaction: the end of a short job's log comes
    /// with its result, one call where there were two. Bytes held already are skipped; a gap is
    /// refused (`StoreError::Gap`) and nothing is recorded.
    pub async fn finish_job_with_log(
        &self,
        by: AgentAttempt<'_>,
        rest: Option<(u64, &[u8])>,
        log_len: u64,
        status: JobStatus,
        exit_code: Option<i64>,
        reason: Option<&str>,
    ) -> Result<FinishOutcome> {
        let AgentAttempt { job_id, attempt, agent } = by;
        let _w = self.write_turn().await;
        let mut tx = self.begin_write().await?;
        lock_job(&mut tx, self.backend(), job_id).await?;
        if rest.is_some() {
            crate::logs::lock_attempt(&mut tx, self.backend(), job_id, attempt).await?;
        }
        // PostgreSQL: the build's row too (see `lock_build`), before its jobs are read below.
        if self.backend() == crate::Backend::Postgres {
            sqlx::query("SELECT id FROM builds WHERE id = (SELECT build_id FROM jobs WHERE id = $1) FOR UPDATE").bind(job_id).fetch_optional(&mut *tx).await?;
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(finish_read()))
            .bind(job_id)
            .bind(attempt)
            .bind(agent)
            .bind(crate::TRIGGERS_PREFIX)
            .bind(crate::prefix_end(crate::TRIGGERS_PREFIX))
            .fetch_all(&mut *tx)
            .await?;
        let Some(row) = rows.first() else { return Err(why_not_held(&mut tx, job_id, attempt, agent).await?) };
        let build_id: i64 = row.try_get("build_id")?;
        let cur_status = crate::rows::job_status(row, "status")?;
        let own_key: String = row.try_get("own_key")?;
        let project: String = row.try_get("project")?;
        let started_at: Option<i64> = row.try_get("started_at")?;
        let named_upstream = row.try_get::<i64, _>("named_upstream")? != 0;
        if cur_status != JobStatus::Running {
            if cur_status == status || cur_status == JobStatus::Cancelled {
                let build_status = crate::rows::build_status(row, "build_status")?;
                return Ok(FinishOutcome { build_id, build_status, build_finished: false, readied: false, repeated: true, project, duration_ms: None, named_upstream });
            }
            return Err(StoreError::Stale { job_id, attempt });
        }
        let mut held = row.try_get::<i64, _>("log_len")? as u64;
        let plan = match rest {
            Some((offset, data)) => Some((offset, data, self.plan_append(job_id, attempt, held, offset, data.len() as u64)?)),
            None => None,
        };
        let will_hold = match &plan {
            Some((_, _, crate::logs::AppendPlan::Write { end, .. })) => *end,
            _ => held,
        };
        if will_hold < log_len {
            return Err(StoreError::Conflict(format!("job {job_id} log incomplete: server holds {will_hold} of {log_len} bytes; send the rest first")));
        }
        if let Some((offset, data, crate::logs::AppendPlan::Write { base, end })) = plan {
            self.write_chunk(job_id, attempt, offset, base, crate::logs::LogChunk::Raw(data)).await?;
            held = end;
        }
        let now = now_ms();
        let n = sqlx::query(
            "UPDATE jobs SET status = $1, exit_code = $2, reason = $3, finished_at = $4, lease_until = NULL \
             WHERE id = $5 AND attempt = $6 AND agent_name = $7 AND status = 'running'",
        )
        .bind(status.as_str())
        .bind(exit_code)
        .bind(reason)
        .bind(now)
        .bind(job_id)
        .bind(attempt)
        .bind(agent)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Err(StoreError::Stale { job_id, attempt });
        }
        sqlx::query("UPDATE attempts SET status = $1, reason = $2, finished_at = $3, log_len = $4 WHERE job_id = $5 AND attempt = $6")
            .bind(status.as_str())
            .bind(reason)
            .bind(now)
            .bind(held as i64)
            .bind(job_id)
            .bind(attempt)
            .execute(&mut *tx)
            .await?;
        let no_jobs = || StoreError::Corrupt(format!("build {build_id} has no jobs but job {job_id} ended"));
        let mut read = BuildState::of(&rows)?.ok_or_else(no_jobs)?;
        for j in read.jobs.iter_mut().filter(|j| j.0 == own_key) {
            j.2 = status;
        }
        let (build_status, build_finished, readied) = settle_build(&mut tx, self.backend(), build_id, Settle::Read(read)).await?.ok_or_else(no_jobs)?;
        tx.commit().await?;
        let duration_ms = started_at.map(|s| now - s);
        Ok(FinishOutcome { build_id, build_status, build_finished, readied, repeated: false, project, duration_ms, named_upstream })
    }

    /// Take back every running job whose lease ran out: back to the queue with
    /// a new attempt to come, or errored once its attempts are spent.
    pub async fn expire_leases(&self) -> Result<Vec<LeaseExpiry>> {
        let now = now_ms();
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM jobs WHERE status = 'running' AND lease_until < $1")
            .bind(now)
            .fetch_all(self.pool())
            .await?;
        let mut out = Vec::new();
        for id in ids {
            if let Some(e) = self.take_back(id, None, None, "its agent stopped answering (lease expired)").await? {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Take back the running jobs of an agent at once (it restarted, or aborted a drain).
    pub async fn requeue_agent_jobs(&self, agent: &str, why: &str) -> Result<Vec<LeaseExpiry>> {
        let mut out = Vec::new();
        for job in self.running_jobs_of_agent(agent).await? {
            if let Some(e) = self.take_back(job.id, Some(job.attempt), Some(agent), why).await? {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// The agent holding a job hands it back (it is shutting down): queue it again at once.
    /// Refused when `agent` does not hold that attempt.
    pub async fn release_job(&self, by: AgentAttempt<'_>) -> Result<Option<LeaseExpiry>> {
        self.check_held(by).await?;
        self.take_back(by.job_id, Some(by.attempt), Some(by.agent), "its agent handed it back").await
    }

    /// Take a running job back, when it is still at `attempt` and held by `agent` (when given).
    async fn take_back(&self, job_id: i64, attempt: Option<i64>, holder: Option<&str>, why: &str) -> Result<Option<LeaseExpiry>> {
        let _w = self.write_turn().await;
        let mut tx = self.begin_write().await?;
        lock_job(&mut tx, self.backend(), job_id).await?;
        let row = sqlx::query("SELECT build_id, attempt, max_attempts, agent_name, status, cancel_requested FROM jobs WHERE id = $1")
            .bind(job_id)
            .fetch_one(&mut *tx)
            .await?;
        let status = crate::rows::job_status(&row, "status")?;
        let cur: i64 = row.try_get("attempt")?;
        let agent: String = row.try_get::<Option<String>, _>("agent_name")?.unwrap_or_default();
        if status != JobStatus::Running || attempt.is_some_and(|a| a != cur) || holder.is_some_and(|h| h != agent) {
            return Ok(None);
        }
        let build_id: i64 = row.try_get("build_id")?;
        let max: i64 = row.try_get("max_attempts")?;
        let cancelled = row.try_get::<i64, _>("cancel_requested")? != 0;
        let now = now_ms();
        let requeue = cur < max && !cancelled;
        let attempt_reason = format!("{why} on agent {agent}");
        sqlx::query("UPDATE attempts SET status = 'errored', reason = $1, finished_at = $2 WHERE job_id = $3 AND attempt = $4")
            .bind(&attempt_reason)
            .bind(now)
            .bind(job_id)
            .bind(cur)
            .execute(&mut *tx)
            .await?;
        crate::testqueue::return_attempt_batches(&mut tx, job_id, cur).await?;
        if requeue {
            sqlx::query("UPDATE jobs SET status = 'queued', agent_name = NULL, lease_until = NULL, queued_at = $1 WHERE id = $2")
                .bind(now)
                .bind(job_id)
                .execute(&mut *tx)
                .await?;
        } else {
            let (st, reason) = if cancelled {
                ("cancelled", "cancelled".to_string())
            } else {
                ("errored", format!("{attempt_reason}; gave up after {cur} attempts"))
            };
            sqlx::query("UPDATE jobs SET status = $1, reason = $2, lease_until = NULL, finished_at = $3 WHERE id = $4")
                .bind(st)
                .bind(reason)
                .bind(now)
                .bind(job_id)
                .execute(&mut *tx)
                .await?;
        }
        settle_build(&mut tx, self.backend(), build_id, Settle::AfterJobEnd).await?;
        tx.commit().await?;
        Ok(Some(LeaseExpiry { job_id, build_id, attempt: cur, agent, requeued: requeue }))
    }

    /// Cancel a build (or one of its jobs): queued jobs end cancelled at once,
    /// running ones are flagged for their agent to stop. Returns the running job ids.
    pub async fn cancel(&self, build_id: i64, job_id: Option<i64>) -> Result<Vec<i64>> {
        let _w = self.write_turn().await;
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        let sel = job_id.unwrap_or(0);
        sqlx::query(
            "UPDATE jobs SET status = 'cancelled', reason = 'cancelled before it started', finished_at = $1 \
             WHERE build_id = $2 AND status = 'queued' AND ($3 = 0 OR id = $3)",
        )
        .bind(now)
        .bind(build_id)
        .bind(sel)
        .execute(&mut *tx)
        .await?;
        let running: Vec<i64> = sqlx::query_scalar(
            "UPDATE jobs SET cancel_requested = 1 WHERE build_id = $1 AND status = 'running' AND ($2 = 0 OR id = $2) RETURNING id",
        )
        .bind(build_id)
        .bind(sel)
        .fetch_all(&mut *tx)
        .await?;
        // A build that never got its jobs (still being read) ends here too.
        sqlx::query("UPDATE builds SET status = 'cancelled', materialized = 1, finished_at = $1 WHERE id = $2 AND materialized = 0")
            .bind(now)
            .bind(build_id)
            .execute(&mut *tx)
            .await?;
        // A build with no jobs is left as the update above made it.
        settle_build(&mut tx, self.backend(), build_id, Settle::Only).await?;
        tx.commit().await?;
        Ok(running)
    }

    /// Attempts of a job, oldest first: (attempt, agent, status, reason, log_len, started, finished).
    pub async fn attempts(&self, job_id: i64) -> Result<Vec<crate::logs::AttemptRow>> {
        crate::logs::attempts_of(self, job_id).await
    }

    /// Every attempt of a build's jobs, by job id (one query).
    pub async fn attempts_of_build(&self, build_id: i64) -> Result<std::collections::HashMap<i64, Vec<crate::logs::AttemptRow>>> {
        crate::logs::attempts_of_build(self, build_id).await
    }
}

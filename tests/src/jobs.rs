//! Import jobs through the API (tests/tests/operator_csv.rs, security.rs): upload an operator CSV, follow the job
//! it starts to its end, fetch its generated passwords.

use std::future::Future;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::{Reply, TestApp, send};

/// `/api/v1/municipalities/{code}/operators/import`
pub fn operator_import_path(code: &str) -> String {
    format!("/api/v1/municipalities/{code}/operators/import")
}

/// What an operator import came to.
#[derive(Debug, Clone)]
pub enum Imported {
    /// Answered at once (a 4xx): no job was started.
    Refused(Reply),
    /// The job started (`accepted`, the `202`) and ended (`job`, its resource then).
    Finished { accepted: Reply, job: Value },
}

/// An answer that may be a refusal: a [`Reply`], or an [`Imported`] whose job failed.
pub trait Refusal {
    /// Asserts a refusal with this status and problem `type` and returns the problem.
    #[track_caller]
    fn refusal(&self, status: StatusCode, kind: &str) -> Value;
}

impl Refusal for Reply {
    #[track_caller]
    fn refusal(&self, status: StatusCode, kind: &str) -> Value {
        self.problem(status, kind)
    }
}

impl Refusal for Imported {
    #[track_caller]
    fn refusal(&self, status: StatusCode, kind: &str) -> Value {
        self.problem(status, kind)
    }
}

impl Imported {
    /// Asserts a refusal with this status and `type`, answered at once or as the failed job's outcome, and
    /// returns the problem.
    #[track_caller]
    pub fn problem(&self, status: StatusCode, kind: &str) -> Value {
        match self {
            Imported::Refused(reply) => reply.problem(status, kind),
            Imported::Finished { job, .. } => {
                assert_eq!(job["state"], "failed", "the job: {job}");
                let problem = &job["outcome"];
                assert_eq!(problem["type"], kind, "problem type; job: {job}");
                assert_eq!(problem["status"], status.as_u16(), "problem status; job: {job}");
                assert!(problem["title"].as_str().is_some_and(|t| !t.is_empty()), "problem title; job: {job}");
                problem.clone()
            }
        }
    }

    /// Asserts that the job succeeded and returns its report.
    #[track_caller]
    pub fn report(&self) -> Value {
        match self {
            Imported::Refused(reply) => panic!("refused at once: {} {}", reply.status, reply.text),
            Imported::Finished { job, .. } => {
                assert_eq!(job["state"], "succeeded", "the job: {job}");
                job["outcome"].clone()
            }
        }
    }

    /// The job's id; panics when none was started.
    #[track_caller]
    pub fn job_id(&self) -> String {
        match self {
            Imported::Refused(reply) => panic!("refused at once: {} {}", reply.status, reply.text),
            Imported::Finished { job, .. } => job["job_id"].as_str().expect("a job id").to_owned(),
        }
    }
}

/// `/api/v1/jobs/{job_id}`
pub fn job_path(job_id: &str) -> String {
    format!("/api/v1/jobs/{job_id}")
}

impl TestApp {
    /// Uploads an operator CSV with this `Content-Type` (and `headers`) and follows the job it starts to its end
    /// (in the language of the `accept-language` among `headers`: the job is told in the language of who asks).
    pub fn import_operators(
        &self,
        code: &str,
        token: &str,
        content_type: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> impl Future<Output = Imported> + Send + use<> {
        let mut request = self
            .request(Method::POST, &operator_import_path(code), Some(token))
            .header("content-type", content_type)
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut this = self.poller();
        this.language =
            headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("accept-language")).map(|(_, v)| v.to_string());
        let token = token.to_owned();
        async move {
            let accepted = send(request).await;
            if accepted.status != StatusCode::ACCEPTED {
                return Imported::Refused(accepted);
            }
            let location = accepted.header("location").expect("a 202 says where its job is").to_owned();
            assert_eq!(accepted.json()["job_id"], location.trim_start_matches("/api/v1/jobs/"), "{}", accepted.text);
            let job = this.until_ended(&location, &token).await;
            Imported::Finished { accepted, job }
        }
    }

    /// The job's resource once it has ended (polled).
    pub async fn wait_for_job(&self, token: &str, job_id: &str) -> Value {
        self.poller().until_ended(&job_path(job_id), token).await
    }

    /// `POST /api/v1/jobs/{job_id}/passwords`.
    pub fn take_job_passwords(&self, token: &str, job_id: &str) -> impl Future<Output = Reply> + Send + use<> {
        send(self.request(Method::POST, &format!("{}/passwords", job_path(job_id)), Some(token)))
    }

    /// The report of an import job that succeeded, with each generated password (fetched once, by `token`) in its
    /// item as `password`: what the import's answer held before it was a job.
    pub async fn import_report(&self, token: &str, imported: &Imported) -> Value {
        let mut report = imported.report();
        let passwords = self.take_job_passwords(token, &imported.job_id()).await;
        assert_eq!(passwords.status, StatusCode::OK, "{}", passwords.text);
        assert_eq!(passwords.header("cache-control"), Some("no-store"));
        for p in passwords.json()["items"].as_array().expect("items") {
            let item = report["items"]
                .as_array_mut()
                .expect("items")
                .iter_mut()
                .find(|i| i["row"] == p["row"])
                .unwrap_or_else(|| panic!("a password for a row that was not registered: {p}"));
            assert_eq!(item["operator_id"], p["operator_id"]);
            assert_eq!(item["password_generated"], true, "{item}");
            item["password"] = p["password"].clone();
        }
        let generated = report["items"].as_array().unwrap().iter().filter(|i| i["password_generated"] == true).count();
        let fetched = report["items"].as_array().unwrap().iter().filter(|i| i.get("password").is_some()).count();
        assert_eq!(generated, fetched, "every generated password was handed out: {report}");
        report
    }

    fn poller(&self) -> Poller {
        Poller { client: self.client.clone(), address: self.address.clone(), language: None }
    }
}

/// What polls a job (owned, so a request future borrows nothing of the app).
struct Poller {
    client: reqwest::Client,
    address: String,
    /// `Accept-Language` of every poll.
    language: Option<String>,
}

impl Poller {
    async fn until_ended(&self, path: &str, token: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let mut request = self.client.get(format!("{}{path}", self.address)).bearer_auth(token);
            if let Some(language) = &self.language {
                request = request.header("accept-language", language);
            }
            let reply = send(request).await;
            assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text);
            let job = reply.json();
            if job["state"] != "running" {
                assert!(job["finished_at"].is_string(), "{job}");
                return job;
            }
            assert!(tokio::time::Instant::now() < deadline, "the job did not end within a minute: {job}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

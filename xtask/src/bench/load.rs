//! The load generator: concurrent clients, each on its own keep-alive connection, calling the
//! memory tools over HTTP with the modern protocol.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::http::{Client, Outcome, outcome, tool_call_body};
use super::server::TOKEN;
use super::words::{Rng, Vocabulary};

/// A memory tool the load calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Store,
    Search,
    GetSession,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Store => "store_raw_dialogue",
            Tool::Search => "search_memory",
            Tool::GetSession => "get_session",
        }
    }
}

/// One client of the load: a connection, a random source and its own sessions.
#[derive(Debug)]
pub struct Worker {
    client: Client,
    rng: Rng,
    vocabulary: Arc<Vocabulary>,
    id: usize,
    calls: u64,
    text: String,
    /// Arguments of `search_memory` to cycle through, instead of one or two common words.
    searches: Option<Arc<Vec<Value>>>,
}

impl Worker {
    pub fn new(addr: SocketAddr, vocabulary: Arc<Vocabulary>, id: usize, seed: u64) -> Worker {
        Worker {
            client: Client::new(addr, TOKEN),
            rng: Rng::new(seed ^ (id as u64).wrapping_mul(0x9E37_79B9)),
            vocabulary,
            id,
            calls: 0,
            text: String::new(),
            searches: None,
        }
    }

    pub fn with_searches(mut self, searches: Option<&Arc<Vec<Value>>>) -> Worker {
        self.searches = searches.filter(|searches| !searches.is_empty()).cloned();
        self
    }

    fn session(&self) -> String {
        format!("load-{}-{}", self.id, self.calls / 50)
    }

    /// Calls `tool` once; the time from sending to the whole answer, and the answer.
    pub async fn call(&mut self, tool: Tool) -> (Duration, Result<Outcome, std::io::Error>) {
        self.calls += 1;
        let arguments = match tool {
            Tool::Store => {
                self.text.clear();
                let words = self.rng.range(8, 40);
                self.vocabulary.text(&mut self.rng, words, &mut self.text);
                let speaker = if self.calls.is_multiple_of(2) {
                    "assistant"
                } else {
                    "user"
                };
                json!({"session_id": self.session(), "speaker": speaker, "content": self.text})
            }
            Tool::Search if self.searches.is_some() => {
                let searches = self.searches.as_ref().expect("checked");
                searches[(self.id * 7919 + self.calls as usize) % searches.len()].clone()
            }
            Tool::Search => {
                let query = if self.rng.next_u64().is_multiple_of(2) {
                    self.vocabulary.word_in(&mut self.rng, 20, 2000).to_owned()
                } else {
                    format!(
                        "{} {}",
                        self.vocabulary.word_in(&mut self.rng, 10, 300),
                        self.vocabulary.word_in(&mut self.rng, 10, 300)
                    )
                };
                json!({"query": query})
            }
            Tool::GetSession => json!({"session_id": self.session(), "limit": 20}),
        };
        let body = tool_call_body(self.calls, tool.name(), arguments);
        let started = Instant::now();
        let response = self
            .client
            .mcp("tools/call", Some(tool.name()), &body)
            .await;
        let elapsed = started.elapsed();
        (elapsed, response.map(|response| outcome(&response)))
    }
}

/// What one load run measured.
#[derive(Debug, Default, Clone)]
pub struct LoadResult {
    /// Calls answered successfully within the measured window.
    pub completed: u64,
    /// Calls that failed within the window, by kind.
    pub errors: BTreeMap<String, u64>,
    /// Length of the measured window.
    pub window: Duration,
    /// Latency of each successful call in the window, ms.
    pub latencies_ms: Vec<f64>,
}

impl LoadResult {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn throughput(&self) -> f64 {
        self.completed as f64 / self.window.as_secs_f64()
    }

    pub fn merge(&mut self, other: LoadResult) {
        self.completed += other.completed;
        for (kind, count) in other.errors {
            *self.errors.entry(kind).or_default() += count;
        }
        self.window += other.window;
        self.latencies_ms.extend(other.latencies_ms);
    }
}

/// A closed-loop run: `clients` workers call `tool` back to back for `warmup` (not recorded),
/// then for `duration`; a call counts when it starts and ends inside the measured window.
#[derive(Debug, Clone, Copy)]
pub struct ClosedLoop {
    pub tool: Tool,
    pub clients: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub seed: u64,
}

pub async fn closed_loop(
    addr: SocketAddr,
    vocabulary: &Arc<Vocabulary>,
    searches: Option<&Arc<Vec<Value>>>,
    spec: ClosedLoop,
) -> LoadResult {
    let ClosedLoop {
        tool,
        clients,
        warmup,
        duration,
        seed,
    } = spec;
    let start = Instant::now() + warmup;
    let end = start + duration;
    let mut tasks = Vec::with_capacity(clients);
    for id in 0..clients {
        let mut worker = Worker::new(addr, vocabulary.clone(), id, seed).with_searches(searches);
        tasks.push(tokio::spawn(async move {
            let mut result = LoadResult::default();
            while Instant::now() < end {
                let began = Instant::now();
                let (elapsed, answer) = worker.call(tool).await;
                let done = Instant::now();
                if began < start || done > end {
                    continue;
                }
                match answer {
                    Ok(Outcome::Ok(_)) => {
                        result.completed += 1;
                        result.latencies_ms.push(elapsed.as_secs_f64() * 1e3);
                    }
                    Ok(other) => *result.errors.entry(other.kind()).or_default() += 1,
                    Err(err) => {
                        *result
                            .errors
                            .entry(format!("connection: {}", err.kind()))
                            .or_default() += 1;
                        // Do not spin on a dead server.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            result
        }));
    }
    let mut total = LoadResult::default();
    for task in tasks {
        if let Ok(result) = task.await {
            total.merge(result);
        }
    }
    total.window = duration;
    total
}

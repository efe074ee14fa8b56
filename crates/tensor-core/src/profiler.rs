//! An op-level profiler, like `torch.profiler`: [`profile`] runs a closure and records
//! every op it runs, with its name, input shapes, device, thread and wall time.
//!
//! Two levels are recorded: every primitive a backend executes (`unary.exp`,
//! `matmul`, `reduce.sum`, ...: all the work of every op goes through them), and named
//! scopes around composite ops and autograd backward nodes (`conv2d`,
//! `mm.backward`, ...), which contain the primitives they run. The table gives each
//! name's calls, total and self time (total minus nested scopes); the Chrome trace
//! (`chrome://tracing`, Perfetto) shows the nesting on a time line.
//!
//! Off by default: when no profile is being taken, a recording point costs one atomic
//! load. Times are host wall-clock times; on an asynchronous device (CUDA) they measure
//! the launch unless the profiled code synchronizes.
//!
//! ```
//! use tensor_core::{profiler, DType, Device, Tensor};
//! let a = Tensor::ones([64, 64], DType::F32, &Device::cpu())?;
//! let (out, prof) = profiler::profile(|| a.matmul(&a)?.relu());
//! out?;
//! assert!(prof.events().iter().any(|e| e.name == "matmul" && e.shapes[0] == [1, 64, 64]));
//! println!("{}", prof.table());
//! let trace = prof.chrome_trace();
//! assert!(trace.starts_with("{\"traceEvents\":["));
//! # Ok::<(), tensor_core::Error>(())
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::backend::{Backend, BinaryOp, Buffer, DeviceLocation, FusedOp, OwnedBuffer, ReduceOp, ScanOp, UnaryOp};
use crate::cpu::HostBuffer;
use crate::{DType, Layout, Result, Scalar, Tensor};

/// Number of profiles being taken now (any thread).
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// True while some thread is inside [`profile`]: the one check a recording point makes.
#[inline(always)]
pub fn is_enabled() -> bool {
    ACTIVE.load(Ordering::Relaxed) != 0
}

/// One recorded op.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The op's name (`"matmul"`, `"binary.add"`, `"conv2d"`, `"AddBackward"`).
    pub name: String,
    /// Its inputs' shapes.
    pub shapes: Vec<Vec<usize>>,
    /// The device it ran on (`"cpu"`, `"cuda:0"`).
    pub device: String,
    /// Start, in nanoseconds since the profile began.
    pub start_ns: u64,
    /// Wall time in nanoseconds (on an asynchronous device such as CUDA: the time to
    /// queue the op).
    pub dur_ns: u64,
    /// Device time in nanoseconds between CUDA events recorded around the op, for
    /// backend primitives on asynchronous devices; `None` on the CPU.
    pub device_ns: Option<u64>,
    /// Time inside nested recorded ops, in nanoseconds (`dur_ns - child_ns` is the
    /// op's self time).
    pub child_ns: u64,
    /// Nesting depth (0 for outermost ops).
    pub depth: u32,
    /// A small number identifying the recording thread.
    pub thread: u64,
}

/// Device events recorded around one op, resolved when the profile ends.
type Pending = (Box<dyn crate::backend::DeviceEvent>, Box<dyn crate::backend::DeviceEvent>);

struct Session {
    t0: Instant,
    events: Mutex<Vec<(Event, Option<Pending>)>>,
}

/// Per thread: the sessions it records into (its own profile, or the one of the
/// thread that started it), and the stack of open scopes' child times.
struct Local {
    session: Option<Arc<Session>>,
    stack: Vec<u64>,
    thread: u64,
}

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local {
        session: None,
        stack: Vec::new(),
        thread: NEXT_THREAD.fetch_add(1, Ordering::Relaxed) as u64,
    });
}

/// A recorded op in progress; records its event when dropped.
#[must_use = "the op is timed until the guard is dropped"]
pub struct Scope {
    open: Option<Open>,
}

struct Open {
    session: Arc<Session>,
    name: String,
    shapes: Vec<Vec<usize>>,
    device: String,
    start: Instant,
    /// The backend and the event recorded before the op, on asynchronous devices.
    timing: Option<(Arc<dyn Backend>, Box<dyn crate::backend::DeviceEvent>)>,
}

/// Starts timing an op named `name` with inputs of `shapes` on `device` (closures, so
/// nothing is computed or allocated when this thread is not being profiled: the guard
/// is then inert).
#[inline]
pub fn scope_with(
    name: impl FnOnce() -> String,
    shapes: impl FnOnce() -> Vec<Vec<usize>>,
    device: impl FnOnce() -> String,
) -> Scope {
    if !is_enabled() {
        return Scope { open: None };
    }
    let session = LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        let s = l.session.clone();
        if s.is_some() {
            l.stack.push(0);
        }
        s
    });
    match session {
        None => Scope { open: None },
        Some(session) => Scope {
            open: Some(Open {
                session,
                name: name(),
                shapes: shapes(),
                device: device(),
                start: Instant::now(),
                timing: None,
            }),
        },
    }
}

/// [`scope_with`] for an op on tensors: their shapes and the first one's device.
#[inline]
pub fn scope(name: &'static str, inputs: &[&Tensor]) -> Scope {
    if !is_enabled() {
        return Scope { open: None };
    }
    scope_with(
        || name.to_string(),
        || inputs.iter().map(|t| t.dims().to_vec()).collect(),
        || inputs.first().map(|t| t.device().to_string()).unwrap_or_else(|| "cpu".into()),
    )
}

impl Drop for Scope {
    fn drop(&mut self) {
        let Some(o) = self.open.take() else { return };
        let end = Instant::now();
        let dur = end.duration_since(o.start).as_nanos() as u64;
        let (child, depth, thread) = LOCAL.with(|l| {
            let mut l = l.borrow_mut();
            let child = l.stack.pop().unwrap_or(0);
            if let Some(parent) = l.stack.last_mut() {
                *parent += dur;
            }
            (child, l.stack.len() as u32, l.thread)
        });
        let ev = Event {
            name: o.name,
            shapes: o.shapes,
            device: o.device,
            start_ns: o.start.saturating_duration_since(o.session.t0).as_nanos() as u64,
            dur_ns: dur,
            device_ns: None,
            child_ns: child.min(dur),
            depth,
            thread,
        };
        let pending = o.timing.and_then(|(be, start)| be.record_event().and_then(|r| r.ok()).map(|end| (start, end)));
        let session = o.session;
        let pushed = session.events.lock().map(|mut evs| evs.push((ev, pending)));
        drop(pushed);
    }
}

/// Runs `f` on this thread with profiling on, and returns its result with the ops it
/// ran. Ops run by this thread are recorded (work the CPU backend hands to its
/// worker threads counts inside the op that started it). Profiles on different
/// threads are independent; a profile nested in another records its ops in the inner
/// profile only, until it ends.
pub fn profile<R>(f: impl FnOnce() -> R) -> (R, Profile) {
    let session = Arc::new(Session { t0: Instant::now(), events: Mutex::new(Vec::new()) });
    let saved = LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        (l.session.replace(session.clone()), std::mem::take(&mut l.stack))
    });
    ACTIVE.fetch_add(1, Ordering::Relaxed);
    struct Restore(Option<(Option<Arc<Session>>, Vec<u64>)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            ACTIVE.fetch_sub(1, Ordering::Relaxed);
            if let Some((s, st)) = self.0.take() {
                LOCAL.with(|l| {
                    let mut l = l.borrow_mut();
                    l.session = s;
                    l.stack = st;
                });
            }
        }
    }
    let guard = Restore(Some(saved));
    let r = f();
    drop(guard);
    let recorded = session.events.lock().map(|mut e| std::mem::take(&mut *e)).unwrap_or_default();
    // Device times: waiting on each end event (the ops ran asynchronously).
    let mut events: Vec<Event> = recorded
        .into_iter()
        .map(|(mut e, pending)| {
            if let Some((start, end)) = pending {
                e.device_ns = end.elapsed_ns_since(&*start).ok();
            }
            e
        })
        .collect();
    events.sort_by_key(|e| (e.start_ns, e.depth));
    (r, Profile { events })
}

/// The ops recorded by [`profile`].
#[derive(Clone, Debug, Default)]
pub struct Profile {
    events: Vec<Event>,
}

/// Totals for one op name (PyTorch's `key_averages()` row).
#[derive(Clone, Debug, PartialEq)]
pub struct OpStats {
    /// The op's name.
    pub name: String,
    /// How many times it ran.
    pub calls: usize,
    /// Total wall time in nanoseconds (nested ops included).
    pub total_ns: u64,
    /// Self time in nanoseconds (nested recorded ops excluded).
    pub self_ns: u64,
    /// Device time in nanoseconds (CUDA events around backend primitives), summed
    /// over the calls that have one.
    pub device_ns: u64,
}

impl Profile {
    /// Every recorded op, in start order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Totals per op name, sorted by self time, largest first.
    pub fn key_averages(&self) -> Vec<OpStats> {
        let mut by: HashMap<&str, OpStats> = HashMap::new();
        for e in &self.events {
            let s = by.entry(&e.name).or_insert_with(|| OpStats {
                name: e.name.clone(),
                calls: 0,
                total_ns: 0,
                self_ns: 0,
                device_ns: 0,
            });
            s.calls += 1;
            s.device_ns += e.device_ns.unwrap_or(0);
            s.total_ns += e.dur_ns;
            s.self_ns += e.dur_ns - e.child_ns;
        }
        let mut v: Vec<OpStats> = by.into_values().collect();
        v.sort_by(|a, b| b.self_ns.cmp(&a.self_ns).then(a.name.cmp(&b.name)));
        v
    }

    /// A text table of [`Profile::key_averages`] (like PyTorch's
    /// `key_averages().table()`), with each op's share of the total self time.
    pub fn table(&self) -> String {
        let rows = self.key_averages();
        let all: u64 = rows.iter().map(|r| r.self_ns).sum::<u64>().max(1);
        let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).clamp(4, 40);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<width$}  {:>7}  {:>11}  {:>8}  {:>11}  {:>11}",
            "Name", "Calls", "Self", "Self %", "Total", "Avg total"
        );
        let _ = writeln!(s, "{}", "-".repeat(width + 60));
        for r in &rows {
            let _ = writeln!(
                s,
                "{:<width$}  {:>7}  {:>11}  {:>7.2}%  {:>11}  {:>11}",
                truncate(&r.name, width),
                r.calls,
                human(r.self_ns),
                100.0 * r.self_ns as f64 / all as f64,
                human(r.total_ns),
                human(r.total_ns / r.calls.max(1) as u64)
            );
        }
        let _ = writeln!(s, "{}", "-".repeat(width + 60));
        let _ = writeln!(s, "Self time total: {}", human(all));
        // Asynchronous devices: the device time of each primitive (CUDA events), which
        // the wall-time columns above do not show.
        let mut dev_rows: Vec<&OpStats> = rows.iter().filter(|r| r.device_ns > 0).collect();
        if !dev_rows.is_empty() {
            dev_rows.sort_by(|a, b| b.device_ns.cmp(&a.device_ns).then(a.name.cmp(&b.name)));
            let dall: u64 = dev_rows.iter().map(|r| r.device_ns).sum::<u64>().max(1);
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "{:<width$}  {:>7}  {:>11}  {:>8}  {:>11}",
                "Name", "Calls", "Device", "Device %", "Avg device"
            );
            let _ = writeln!(s, "{}", "-".repeat(width + 46));
            for r in dev_rows {
                let _ = writeln!(
                    s,
                    "{:<width$}  {:>7}  {:>11}  {:>7.2}%  {:>11}",
                    truncate(&r.name, width),
                    r.calls,
                    human(r.device_ns),
                    100.0 * r.device_ns as f64 / dall as f64,
                    human(r.device_ns / r.calls.max(1) as u64)
                );
            }
            let _ = writeln!(s, "{}", "-".repeat(width + 46));
            let _ = writeln!(s, "Device time total: {}", human(dall));
        }
        s
    }

    /// The events as Chrome trace JSON (complete events, microseconds), which
    /// `chrome://tracing` and Perfetto (ui.perfetto.dev) open.
    pub fn chrome_trace(&self) -> String {
        let mut s = String::from("{\"traceEvents\":[");
        for (i, e) in self.events.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let shapes: Vec<String> = e
                .shapes
                .iter()
                .map(|d| format!("[{}]", d.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")))
                .collect();
            let _ = write!(
                s,
                "{{\"name\":\"{}\",\"cat\":\"op\",\"ph\":\"X\",\"ts\":{:.3},\"dur\":{:.3},\"pid\":1,\"tid\":{},\"args\":{{\"device\":\"{}\",\"shapes\":\"{}\"{}}}}}",
                escape(&e.name),
                e.start_ns as f64 / 1e3,
                e.dur_ns as f64 / 1e3,
                e.thread,
                escape(&e.device),
                shapes.join(" "),
                e.device_ns.map(|d| format!(",\"device_us\":{:.3}", d as f64 / 1e3)).unwrap_or_default()
            );
        }
        s.push_str("],\"displayTimeUnit\":\"ms\"}");
        s
    }

    /// Writes [`Profile::chrome_trace`] to a file.
    pub fn save_chrome_trace(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.chrome_trace())
            .map_err(|e| crate::Error::Io { path: path.display().to_string(), source: e })
    }
}

fn truncate(s: &str, w: usize) -> String {
    if s.len() <= w {
        s.to_string()
    } else {
        let mut end = w - 1;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}

fn human(ns: u64) -> String {
    if ns >= 1_000_000_000 {
        format!("{:.3}s", ns as f64 / 1e9)
    } else if ns >= 1_000_000 {
        format!("{:.3}ms", ns as f64 / 1e6)
    } else {
        format!("{:.3}us", ns as f64 / 1e3)
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Wraps a backend so that each primitive it runs is a recorded op; a device hands out
/// this wrapper instead of its backend while a profile is being taken.
#[derive(Debug)]
pub(crate) struct Profiled(pub(crate) Arc<dyn Backend>);

fn dev(b: &dyn Backend) -> String {
    match b.location() {
        DeviceLocation::Cpu => "cpu".into(),
        DeviceLocation::Cuda(i) => format!("cuda:{i}"),
    }
}

impl Profiled {
    fn rec(&self, name: impl FnOnce() -> String, layouts: &[&Layout]) -> Scope {
        let mut s = scope_with(name, || layouts.iter().map(|l| l.dims().to_vec()).collect(), || dev(&*self.0));
        if let Some(o) = &mut s.open {
            if let Some(Ok(start)) = self.0.record_event() {
                o.timing = Some((self.0.clone(), start));
            }
        }
        s
    }
}

fn lower<T: std::fmt::Debug>(prefix: &str, op: T) -> String {
    format!("{prefix}.{}", format!("{op:?}").to_lowercase())
}

impl Backend for Profiled {
    fn location(&self) -> DeviceLocation {
        self.0.location()
    }
    fn zeros(&self, dtype: DType, len: usize) -> Result<OwnedBuffer> {
        let _s = scope_with(|| "zeros".into(), || vec![vec![len]], || dev(&*self.0));
        self.0.zeros(dtype, len)
    }
    fn upload(&self, data: HostBuffer) -> Result<OwnedBuffer> {
        let _s = scope_with(|| "upload".into(), || vec![vec![data.len()]], || dev(&*self.0));
        self.0.upload(data)
    }
    fn download(&self, buf: &dyn Buffer, layout: &Layout) -> Result<HostBuffer> {
        let _s = self.rec(|| "download".into(), &[layout]);
        self.0.download(buf, layout)
    }
    fn copy_strided(&self, src: &dyn Buffer, src_l: &Layout, dst: &mut dyn Buffer, dst_l: &Layout) -> Result<()> {
        let _s = self.rec(|| "copy".into(), &[src_l, dst_l]);
        self.0.copy_strided(src, src_l, dst, dst_l)
    }
    fn fill(&self, dst: &mut dyn Buffer, dst_l: &Layout, value: Scalar) -> Result<()> {
        let _s = self.rec(|| "fill".into(), &[dst_l]);
        self.0.fill(dst, dst_l, value)
    }
    fn cast(&self, src: &dyn Buffer, l: &Layout, dtype: DType) -> Result<OwnedBuffer> {
        let _s = self.rec(|| format!("cast.{dtype}"), &[l]);
        self.0.cast(src, l, dtype)
    }
    fn unary(&self, op: UnaryOp, src: &dyn Buffer, l: &Layout) -> Result<OwnedBuffer> {
        let _s = self.rec(|| lower("unary", op), &[l]);
        self.0.unary(op, src, l)
    }
    fn binary(
        &self,
        op: BinaryOp,
        lhs: &dyn Buffer,
        lhs_layout: &Layout,
        rhs: &dyn Buffer,
        rhs_layout: &Layout,
    ) -> Result<OwnedBuffer> {
        let _s = self.rec(|| lower("binary", op), &[lhs_layout, rhs_layout]);
        self.0.binary(op, lhs, lhs_layout, rhs, rhs_layout)
    }
    fn binary_inplace(
        &self,
        op: BinaryOp,
        dst: &mut dyn Buffer,
        dst_l: &Layout,
        rhs: &dyn Buffer,
        rhs_layout: &Layout,
    ) -> Result<()> {
        let _s = self.rec(|| format!("{}_", lower("binary", op)), &[dst_l, rhs_layout]);
        self.0.binary_inplace(op, dst, dst_l, rhs, rhs_layout)
    }
    fn where_cond(
        &self,
        cond: &dyn Buffer,
        cl: &Layout,
        a: &dyn Buffer,
        al: &Layout,
        b: &dyn Buffer,
        bl: &Layout,
    ) -> Result<OwnedBuffer> {
        let _s = self.rec(|| "where".into(), &[cl, al, bl]);
        self.0.where_cond(cond, cl, a, al, b, bl)
    }
    fn reduce(&self, op: ReduceOp, src: &dyn Buffer, l: &Layout, dims: &[usize]) -> Result<OwnedBuffer> {
        let _s = self.rec(|| lower("reduce", op), &[l]);
        self.0.reduce(op, src, l, dims)
    }
    fn scan(&self, op: ScanOp, src: &dyn Buffer, l: &Layout, dim: usize) -> Result<OwnedBuffer> {
        let _s = self.rec(|| lower("scan", op), &[l]);
        self.0.scan(op, src, l, dim)
    }
    fn matmul(
        &self,
        lhs: &dyn Buffer,
        lhs_layout: &Layout,
        rhs: &dyn Buffer,
        rhs_layout: &Layout,
    ) -> Result<OwnedBuffer> {
        let _s = self.rec(|| "matmul".into(), &[lhs_layout, rhs_layout]);
        self.0.matmul(lhs, lhs_layout, rhs, rhs_layout)
    }
    fn gather(
        &self,
        src: &dyn Buffer,
        src_layout: &Layout,
        index: &dyn Buffer,
        index_layout: &Layout,
        dim: usize,
    ) -> Result<OwnedBuffer> {
        let _s = self.rec(|| "gather".into(), &[src_layout, index_layout]);
        self.0.gather(src, src_layout, index, index_layout, dim)
    }
    fn scatter(
        &self,
        dst: &mut dyn Buffer,
        dl: &Layout,
        index: &dyn Buffer,
        index_layout: &Layout,
        src: &dyn Buffer,
        src_layout: &Layout,
        dim: usize,
        accumulate: bool,
    ) -> Result<()> {
        let _s = self
            .rec(|| if accumulate { "scatter_add".into() } else { "scatter".into() }, &[dl, index_layout, src_layout]);
        self.0.scatter(dst, dl, index, index_layout, src, src_layout, dim, accumulate)
    }
    fn sort(&self, src: &dyn Buffer, l: &Layout, dim: usize, descending: bool) -> Result<(OwnedBuffer, OwnedBuffer)> {
        let _s = self.rec(|| "sort".into(), &[l]);
        self.0.sort(src, l, dim, descending)
    }
    fn fused(&self, op: FusedOp<'_>) -> Option<Result<Vec<OwnedBuffer>>> {
        let (name, dims) = (op.name(), op.input_dims());
        let mut s = scope_with(|| format!("fused.{name}"), || vec![dims], || dev(&*self.0));
        if let Some(o) = &mut s.open {
            if let Some(Ok(start)) = self.0.record_event() {
                o.timing = Some((self.0.clone(), start));
            }
        }
        self.0.fused(op)
    }
    fn synchronize(&self) -> Result<()> {
        self.0.synchronize()
    }
}

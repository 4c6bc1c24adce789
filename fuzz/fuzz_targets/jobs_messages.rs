//! The AWS IoT Jobs parsers, the topic classifier and string unescaping
//! never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otalite::protocol::jobs::{
    classify, select_job, DescribeAccepted, JsonStr, Notify, PendingJobs, Rejected,
    UpdateAccepted, UPPARAT_JOB_PREFIX,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(notify) = Notify::parse(data) {
        let _ = select_job(&notify.jobs.in_progress, &notify.jobs.queued, UPPARAT_JOB_PREFIX);
    }
    if let Ok(pending) = PendingJobs::parse(data) {
        let _ = select_job(&pending.in_progress_jobs, &pending.queued_jobs, UPPARAT_JOB_PREFIX);
    }
    if let Ok(reply) = DescribeAccepted::parse(data) {
        if let Some(execution) = reply.execution {
            let _ = execution.state();
            if let Some(document) = execution.job_document {
                let mut out = [0u8; 64];
                let _ = document.file.unescape(&mut out);
                let _ = document.version.eq_str("1.0");
            }
        }
    }
    let _ = UpdateAccepted::parse(data);
    let _ = Rejected::parse(data);
    if let Ok(text) = core::str::from_utf8(data) {
        let _ = classify("thing", text);
        let mut out = [0u8; 32];
        let _ = JsonStr(text).unescape(&mut out);
    }
});

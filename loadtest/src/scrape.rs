//! Reading an `rls` replica's Prometheus metrics ([`metric_sum`]) over plain HTTP/1.1: the
//! Redis script calls it made and the largest lease it held, which the harness turns into
//! calls per decision and the accuracy bound of leasing.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The `/metrics` text of the replica serving HTTP at `addr`, if it answers.
pub async fn metrics_text(addr: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET /metrics HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    Some(body.to_string())
}

/// The sum of every series of `name` (with or without labels) in a metrics text.
pub fn sum_of(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let metric = series.split('{').next()?;
            (metric == name).then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// The sum of `name` over the replicas serving HTTP at `addrs` (those that answer).
pub async fn metric_sum(addrs: &[String], name: &str) -> f64 {
    let mut total = 0.0;
    for addr in addrs {
        if let Some(text) = metrics_text(addr).await {
            total += sum_of(&text, name);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_of_one_metric_are_summed_whatever_their_labels() {
        let text = "# TYPE rls_redis_calls_total counter\nrls_redis_calls_total 12\n\
                    rls_requests_total{code=\"ok\"} 5\nrls_requests_total{code=\"over_limit\"} 2\n\
                    rls_redis_calls_total_other 99\n";
        assert_eq!(sum_of(text, "rls_redis_calls_total"), 12.0);
        assert_eq!(sum_of(text, "rls_requests_total"), 7.0);
        assert_eq!(sum_of(text, "missing"), 0.0);
    }
}

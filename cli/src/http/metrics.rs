//! The Prometheus text both views write (`prometheus-client`'s encoder): a registry filled
//! from one snapshot's numbers for each scrape, its counters set to the totals the node
//! counted.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

#[derive(Debug)]
pub struct Metrics(Registry);

impl Metrics {
    /// Metrics whose names begin `prefix_`.
    pub fn new(prefix: &str) -> Metrics {
        Metrics(Registry::with_prefix(prefix))
    }

    pub fn gauge(&mut self, name: &str, help: &str, value: u64) {
        let g = Gauge::<i64>::default();
        g.set(i64::try_from(value).unwrap_or(i64::MAX));
        self.0.register(name, help, g);
    }

    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        let c = Counter::<u64>::default();
        c.inc_by(value);
        self.0.register(name, help, c);
    }

    /// One gauge per value of `label` (a file name).
    pub fn gauges_by<K: ToString>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = (K, u64)>,
    ) {
        let family = Family::<Labels, Gauge>::default();
        for (key, value) in values {
            let value = i64::try_from(value).unwrap_or(i64::MAX);
            family.get_or_create(&labelled(label, key)).set(value);
        }
        self.0.register(name, help, family);
    }

    /// One counter per value of `label` (a reason, a remote address).
    pub fn counters_by<K: ToString>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = (K, u64)>,
    ) {
        let family = Family::<Labels, Counter>::default();
        for (key, value) in values {
            family.get_or_create(&labelled(label, key)).inc_by(value);
        }
        self.0.register(name, help, family);
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Err(e) = encode(&mut text, &self.0) {
            log::error!("http: cannot encode metrics: {e}");
        }
        text
    }
}

fn labelled(label: &str, key: impl ToString) -> Labels {
    vec![(label.to_string(), key.to_string())]
}

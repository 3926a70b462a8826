//! The stock filters, embedded so that the agent is one binary (config/filters/NAME.yaml).

macro_rules! stock {
    ($($name:literal),* $(,)?) => {
        /// (name, YAML text) of every stock filter, sorted by name.
        pub const STOCK: &[(&str, &str)] = &[
            $(($name, include_str!(concat!("../../../config/filters/", $name, ".yaml")))),*
        ];
    };
}

stock!(
    "apache-auth",
    "apache-badbots",
    "apache-noscript",
    "apache-overflows",
    "courier-auth",
    "dovecot",
    "exim",
    "mysqld-auth",
    "named-refused",
    "nginx-bad-request",
    "nginx-botsearch",
    "nginx-http-auth",
    "nginx-limit-req",
    "postfix",
    "proftpd",
    "pure-ftpd",
    "recidive",
    "roundcube-auth",
    "sendmail-auth",
    "sshd",
    "vsftpd",
);

/// The YAML of a stock filter.
pub fn get(name: &str) -> Option<&'static str> {
    STOCK.iter().find(|(n, _)| *n == name).map(|(_, y)| *y)
}

pub fn names() -> impl Iterator<Item = &'static str> {
    STOCK.iter().map(|(n, _)| *n)
}

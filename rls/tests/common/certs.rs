//! Certificates for TLS tests, made with `openssl` (`scripts/test.sh` installs it) in a
//! directory of their own: certificate authorities, and leaf certificates they sign for
//! the names given (EC P-256, valid for two days, for servers and clients alike).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use tempfile::TempDir;

/// A directory of certificates.
pub struct Certs {
    dir: TempDir,
}

/// A leaf certificate and its key, as files.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Leaf {
    /// The certificate file's path as a string, for flags and variables.
    pub fn cert_str(&self) -> String {
        self.cert.display().to_string()
    }

    /// The key file's path as a string.
    pub fn key_str(&self) -> String {
        self.key.display().to_string()
    }

    /// The certificate's DER bytes (its first PEM block).
    pub fn der(&self) -> Vec<u8> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_file(&self.cert)
            .expect("a PEM certificate")
            .to_vec()
    }
}

impl Certs {
    /// An empty directory.
    pub fn new() -> Certs {
        Certs {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The path of `file` in the directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// A certificate authority `name` (`name.crt`, `name.key`); returns its certificate.
    pub fn authority(&self, name: &str) -> PathBuf {
        let config = self.path(&format!("{name}.cnf"));
        std::fs::write(
            &config,
            format!(
                "[req]\ndistinguished_name = dn\nprompt = no\nx509_extensions = ext\n\
                 [dn]\nCN = {name}\n\
                 [ext]\nbasicConstraints = critical, CA:TRUE\n\
                 keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n"
            ),
        )
        .expect("write CA config");
        let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
        self.openssl(
            &["req", "-x509", "-config", &format!("{name}.cnf")]
                .into_iter()
                .chain(NEW_EC_KEY)
                .chain(["-keyout", &key, "-out", &crt, "-days", "2"])
                .collect::<Vec<_>>(),
        );
        self.path(&crt)
    }

    /// A certificate `name` signed by the authority `ca`, for the subject alternative
    /// names `sans` (`DNS:rls.test,IP:127.0.0.1`).
    pub fn leaf(&self, name: &str, ca: &str, sans: &str) -> Leaf {
        static SERIAL: AtomicU64 = AtomicU64::new(1000);
        let ext = format!("{name}.ext");
        std::fs::write(
            self.path(&ext),
            format!(
                "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n\
                 extendedKeyUsage = serverAuth, clientAuth\nsubjectAltName = {sans}\n\
                 authorityKeyIdentifier = keyid\n"
            ),
        )
        .expect("write extensions");
        let (crt, key, csr) = (
            format!("{name}.crt"),
            format!("{name}.key"),
            format!("{name}.csr"),
        );
        let subject = format!("/CN={name}");
        self.openssl(
            &["req", "-new", "-subj", &subject]
                .into_iter()
                .chain(NEW_EC_KEY)
                .chain(["-keyout", &key, "-out", &csr])
                .collect::<Vec<_>>(),
        );
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed).to_string();
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-set_serial",
            &serial,
            "-days",
            "2",
            "-out",
            &crt,
            "-extfile",
            &ext,
        ]);
        Leaf {
            cert: self.path(&crt),
            key: self.path(&key),
        }
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("openssl runs (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// openssl's arguments for a new P-256 key without a passphrase.
const NEW_EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// Replaces `to`'s contents with `from`'s by a rename, as Kubernetes and cert-manager do:
/// a reader never sees half a file.
pub fn replace_file(from: &Path, to: &Path) {
    let staged = to.with_extension("staged");
    std::fs::copy(from, &staged).expect("stage the new file");
    std::fs::rename(&staged, to).expect("rename it over the old one");
}

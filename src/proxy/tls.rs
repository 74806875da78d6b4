//! TLS material: the public listener's certificate and key (PEM files from
//! `[server] tls`), the client config for `https://` upstreams (web PKI roots plus
//! an optional CA bundle), and the self-signed development certificate that
//! `usher keygen --tls-dev DIR` writes. ring is the only crypto provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// What went wrong with TLS material; names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// rustls refused the material.
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    /// The upstream host cannot be used as a TLS server name.
    #[error("upstream host {0:?} is not a valid TLS server name")]
    ServerName(String),
    /// Writing the development certificate failed.
    #[error("could not write the development certificate to {path}: {reason}")]
    Write {
        /// Target directory.
        path: PathBuf,
        /// The I/O or generation error.
        reason: String,
    },
}

fn file_error(path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Builds the acceptor for the public listener (TLS 1.2 and 1.3, ALPN h2 + http/1.1).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error(cert, format!("cannot read certificate PEM: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(cert, format!("malformed certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(
            cert,
            "no CERTIFICATE block found; point [server] tls.cert at a PEM certificate chain",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        file_error(
            key,
            format!("cannot read a private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
        )
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Client TLS for one upstream: web PKI roots plus `ca_file` if given.
pub fn upstream_connector(
    host: &str,
    ca_file: Option<&Path>,
) -> Result<(TlsConnector, ServerName<'static>), TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = ca_file {
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(ca)
            .map_err(|e| file_error(ca, format!("cannot read CA bundle: {e}")))?
        {
            let cert = cert.map_err(|e| file_error(ca, format!("malformed CA PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| file_error(ca, format!("unusable CA certificate: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(file_error(
                ca,
                "no CERTIFICATE block found in the CA bundle",
            ));
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name =
        ServerName::try_from(host.to_owned()).map_err(|_| TlsError::ServerName(host.to_owned()))?;
    Ok((TlsConnector::from(Arc::new(config)), name))
}

/// A self-signed certificate for local development, valid for `names`.
pub struct DevCertificate {
    /// PEM certificate.
    pub cert_pem: String,
    /// PEM private key (PKCS#8).
    pub key_pem: String,
}

/// Generates a development certificate (never for production: browsers will warn).
pub fn dev_certificate(names: &[String]) -> Result<DevCertificate, TlsError> {
    let ck = rcgen::generate_simple_self_signed(names.to_vec()).map_err(|e| TlsError::Write {
        path: PathBuf::new(),
        reason: e.to_string(),
    })?;
    Ok(DevCertificate {
        cert_pem: ck.cert.pem(),
        key_pem: ck.signing_key.serialize_pem(),
    })
}

/// Writes `tls.crt` and `tls.key` (mode 0600) into `dir`.
pub fn write_dev_certificate(dir: &Path, names: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    let dc = dev_certificate(names)?;
    let werr = |e: std::io::Error| TlsError::Write {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(werr)?;
    let cert = dir.join("tls.crt");
    let key = dir.join("tls.key");
    std::fs::write(&cert, dc.cert_pem).map_err(werr)?;
    write_private(&key, dc.key_pem.as_bytes()).map_err(werr)?;
    Ok((cert, key))
}

#[cfg(unix)]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certificate_loads_as_an_acceptor() {
        let tmp = crate::test_support::temp_dir("tls");
        let dir = tmp.path().join("certs");
        let (cert, key) = write_dev_certificate(&dir, &["localhost".into()]).unwrap();
        assert!(acceptor(&cert, &key).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        tmp.close().unwrap();
    }

    #[test]
    fn missing_and_empty_files_name_the_file() {
        let tmp = crate::test_support::temp_dir("tls");
        let dir = tmp.path();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = acceptor(&empty, &empty).err().unwrap().to_string();
        assert!(err.contains("empty.pem"), "{err}");
        let err = acceptor(&dir.join("nope.pem"), &empty)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("nope.pem"), "{err}");
        let err = upstream_connector("h", Some(&empty))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("no CERTIFICATE"), "{err}");
        tmp.close().unwrap();
    }
}

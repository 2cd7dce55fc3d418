//! PEM decoding and encoding for certificates, keys, CSRs and CRLs, with errors that say what was
//! expected.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, CertificateSigningRequestDer,
};

use crate::{Error, Result};

/// Decodes every `CERTIFICATE` block in `pem`; at least one must be present.
pub fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::InvalidArgument(format!("{what}: not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{what}: no CERTIFICATE block found"
        )));
    }
    Ok(certs)
}

/// Decodes exactly the first `CERTIFICATE` block in `pem`.
pub fn certificate(pem: &[u8], what: &str) -> Result<CertificateDer<'static>> {
    Ok(certificates(pem, what)?.remove(0))
}

/// Decodes a `CERTIFICATE REQUEST` block.
pub fn csr(pem: &[u8]) -> Result<CertificateSigningRequestDer<'static>> {
    CertificateSigningRequestDer::from_pem_slice(pem)
        .map_err(|e| Error::InvalidArgument(format!("CSR: not a PEM CERTIFICATE REQUEST: {e}")))
}

/// Decodes an `X509 CRL` block.
pub fn crl(pem: &[u8]) -> Result<CertificateRevocationListDer<'static>> {
    CertificateRevocationListDer::from_pem_slice(pem)
        .map_err(|e| Error::InvalidArgument(format!("CRL: not a PEM X509 CRL: {e}")))
}

/// Encodes DER bytes as one PEM block with the given label (e.g. `CERTIFICATE`).
pub fn encode(label: &str, der: &[u8]) -> String {
    let b64 = base64_encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Encodes a certificate chain as concatenated PEM blocks.
pub fn encode_certificates(chain: &[CertificateDer<'_>]) -> String {
    chain.iter().map(|c| encode("CERTIFICATE", c)).collect()
}

fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_decodes() {
        let der: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let pem = encode("CERTIFICATE", &der);
        assert_eq!(certificate(pem.as_bytes(), "t").unwrap().as_ref(), &der[..]);
        for n in 0..5 {
            let pem = encode("CERTIFICATE", &der[..n]);
            if n > 0 {
                assert_eq!(
                    certificate(pem.as_bytes(), "t").unwrap().as_ref(),
                    &der[..n]
                );
            }
        }
    }

    #[test]
    fn names_what_is_missing() {
        let err = certificate(b"hello", "root.pem").unwrap_err().to_string();
        assert!(
            err.contains("root.pem") && err.contains("no CERTIFICATE"),
            "{err}"
        );
    }
}

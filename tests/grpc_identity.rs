//! Who becomes a principal, over real loopback mutual TLS: certificates without the clientAuth
//! extended key usage (a server certificate of the same CA, a certificate with no EKU at all),
//! DNS names claiming a host principal, and revoked certificates — by the CRL, by serial, by
//! principal — are refused at the handshake (or, for a connection opened before a revocation was
//! reloaded, at its next call), while every other client keeps working.

use std::path::PathBuf;
use std::sync::Arc;

use custos::service::devcerts::{write_issued, DevCa, IssuedCert};
use custos::service::proto::admin_client::AdminClient;
use custos::service::proto::StatusRequest;
use custos::service::StandbyCore;
use custos::service::{start_with_trust, ClientTrust, Revocation, RunningServer, TlsMaterial};
use custos::signing::contract::{AccessMap, Privilege};
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, SanType};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

struct Pki {
    dir: tempfile::TempDir,
    ca: DevCa,
    ca_path: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::generate("identity test CA").unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca.cert_pem()).unwrap();
        Pki { dir, ca, ca_path }
    }

    fn material(&self, stem: &str, issued: &IssuedCert) -> TlsMaterial {
        let (cert, key) = write_issued(self.dir.path(), stem, issued).unwrap();
        TlsMaterial::load(&cert, &key, &self.ca_path).unwrap()
    }

    fn client(&self, name: &str) -> IssuedCert {
        self.ca.client_cert(&uri(name)).unwrap()
    }

    fn crl(&self, stem: &str, revoked: &[&IssuedCert], number: u64) -> PathBuf {
        let path = self.dir.path().join(format!("{stem}.crl"));
        std::fs::write(&path, self.ca.crl(revoked, number).unwrap()).unwrap();
        path
    }

    async fn serve(&self, revocation: &Revocation) -> (RunningServer, Arc<ClientTrust>) {
        let server = self.ca.server_cert(&["localhost", "127.0.0.1"]).unwrap();
        let material = self.material("server", &server);
        let trust = ClientTrust::new(self.ca.cert_pem().as_bytes(), revocation).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        // Everyone is an admin here: Admin.Status then answers with the caller's principal.
        let mut access = AccessMap::new();
        for name in ["a", "b", "c", "d", "e", "both", "no-eku", "dns"] {
            access = access.grant(uri(name), Privilege::Admin);
        }
        let core = Arc::new(StandbyCore::new(access));
        let running = start_with_trust(
            core,
            &material,
            trust.clone(),
            listener,
            None,
            Default::default(),
        )
        .await
        .unwrap();
        (running, trust)
    }
}

fn uri(name: &str) -> String {
    format!("spiffe://identity.test/{name}")
}

async fn channel(server: &RunningServer, material: &TlsMaterial) -> Result<Channel, String> {
    Endpoint::from_shared(format!("https://localhost:{}", server.addr.port()))
        .unwrap()
        .tls_config(custos::service::tls::client_tls(material, "localhost"))
        .unwrap()
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// The principal Admin.Status reports on `channel`, or the error.
async fn status_on(channel: Channel) -> Result<String, tonic::Status> {
    AdminClient::new(channel)
        .status(StatusRequest {})
        .await
        .map(|r| r.into_inner().principal)
}

/// A new connection's principal, or why it was refused (handshake or first call).
async fn principal(server: &RunningServer, material: &TlsMaterial) -> Result<String, String> {
    let channel = channel(server, material).await?;
    status_on(channel).await.map_err(|s| format!("{s:?}"))
}

#[track_caller]
fn assert_refused(result: Result<String, String>, needle: &str) {
    match result {
        Ok(principal) => panic!("accepted as {principal}, expected a refusal ({needle})"),
        Err(error) => assert!(error.contains(needle), "expected {needle:?} in {error}"),
    }
}

#[tokio::test]
async fn only_certificates_with_client_auth_become_principals() {
    let pki = Pki::new();
    let (server, _) = pki.serve(&Revocation::default()).await;

    // A server certificate of the same CA (serverAuth only), used as a client certificate.
    let as_server = pki.ca.server_cert(&["localhost"]).unwrap();
    assert_refused(
        principal(&server, &pki.material("as-server", &as_server)).await,
        "alert",
    );

    // A certificate with no extended key usage at all: webpki takes it as good for any purpose;
    // a principal needs clientAuth.
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::URI(uri("no-eku").as_str().try_into().unwrap())];
    let no_eku = pki.ca.issue(params).unwrap();
    assert_refused(
        principal(&server, &pki.material("no-eku", &no_eku)).await,
        "alert",
    );

    // Both usages is fine, and an ordinary client is fine.
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::URI(uri("both").as_str().try_into().unwrap())];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let both = pki.ca.issue(params).unwrap();
    assert_eq!(
        principal(&server, &pki.material("both", &both))
            .await
            .unwrap(),
        uri("both")
    );
    assert_eq!(
        principal(&server, &pki.material("a", &pki.client("a")))
            .await
            .unwrap(),
        uri("a")
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn dns_names_claiming_a_host_principal_are_refused() {
    let pki = Pki::new();
    let (server, _) = pki.serve(&Revocation::default()).await;
    for (stem, name) in [
        ("l1", "local:sighup"),
        ("l2", "LOCAL:sighup"),
        ("l3", "Local:x"),
    ] {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![SanType::DnsName(name.try_into().unwrap())];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = pki.ca.issue(params).unwrap();
        assert_refused(
            principal(&server, &pki.material(stem, &cert)).await,
            "alert",
        );
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn revoked_by_crl_serial_or_principal_are_refused_at_the_handshake() {
    let pki = Pki::new();
    let (a, b, c, d) = (
        pki.client("a"),
        pki.client("b"),
        pki.client("c"),
        pki.client("d"),
    );
    let revocation = Revocation {
        crl_file: Some(pki.crl("first", &[&a], 1)),
        serials: vec![b.serial()],
        principals: vec![uri("c")],
    };
    let (server, trust) = pki.serve(&revocation).await;
    let summary = trust.summary();
    assert_eq!((summary.crls, summary.crl_entries), (1, 1));
    assert_eq!((summary.serials, summary.principals), (1, 1));

    for (stem, cert) in [("a", &a), ("b", &b), ("c", &c)] {
        assert_refused(
            principal(&server, &pki.material(stem, cert)).await,
            "CertificateRevoked",
        );
    }
    assert_eq!(
        principal(&server, &pki.material("d", &d)).await.unwrap(),
        uri("d")
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_reloaded_crl_refuses_the_newly_revoked_and_keeps_the_others() {
    let pki = Pki::new();
    let (a, d, e) = (pki.client("a"), pki.client("d"), pki.client("e"));
    let crl_path = pki.dir.path().join("ca.crl");
    std::fs::copy(pki.crl("first", &[&a], 1), &crl_path).unwrap();
    let revocation = Revocation {
        crl_file: Some(crl_path.clone()),
        ..Revocation::default()
    };
    let (server, trust) = pki.serve(&revocation).await;
    let (ma, md, me) = (
        pki.material("a", &a),
        pki.material("d", &d),
        pki.material("e", &e),
    );
    assert_refused(principal(&server, &ma).await, "CertificateRevoked");
    // Connections opened before the reload.
    let open_d = channel(&server, &md).await.unwrap();
    let open_e = channel(&server, &me).await.unwrap();
    assert_eq!(status_on(open_d.clone()).await.unwrap(), uri("d"));
    assert_eq!(status_on(open_e.clone()).await.unwrap(), uri("e"));

    // The CA revokes e (and reinstates a); the server reloads the same file.
    std::fs::write(&crl_path, pki.ca.crl(&[&e], 2).unwrap()).unwrap();
    let summary = trust.reload(&revocation).unwrap();
    assert_eq!(summary.crl_entries, 1);

    assert_refused(principal(&server, &me).await, "CertificateRevoked");
    let error = status_on(open_e.clone()).await.unwrap_err();
    assert_eq!(error.code(), Code::Unauthenticated, "{error:?}");
    assert!(error.message().contains("revoked"), "{error:?}");
    assert_eq!(status_on(open_d.clone()).await.unwrap(), uri("d"));
    assert_eq!(principal(&server, &md).await.unwrap(), uri("d"));
    assert_eq!(principal(&server, &ma).await.unwrap(), uri("a"));

    // An invalid CRL, or one from another CA, is refused and the set in force stays.
    std::fs::write(&crl_path, b"not a crl").unwrap();
    assert!(trust.reload(&revocation).is_err());
    let rogue = DevCa::generate("rogue CA").unwrap();
    std::fs::write(&crl_path, rogue.crl(&[&d], 3).unwrap()).unwrap();
    let error = trust.reload(&revocation).unwrap_err().to_string();
    assert!(error.contains("not the client CA"), "{error}");
    std::fs::remove_file(&crl_path).unwrap();
    assert!(trust.reload(&revocation).is_err());
    assert_refused(principal(&server, &me).await, "CertificateRevoked");
    assert_eq!(principal(&server, &md).await.unwrap(), uri("d"));
    assert_eq!(status_on(open_d).await.unwrap(), uri("d"));

    // Serials and principals reload the same way, on open connections too.
    let by_principal = Revocation {
        principals: vec![uri("d")],
        ..Revocation::default()
    };
    trust.reload(&by_principal).unwrap();
    let open_d = channel(&server, &md).await;
    assert!(open_d.is_err() || status_on(open_d.unwrap()).await.is_err());
    assert_eq!(principal(&server, &me).await.unwrap(), uri("e"));
    server.shutdown().await.unwrap();
}

#[test]
fn a_crl_that_is_not_of_the_client_ca_cannot_be_loaded_at_start() {
    let pki = Pki::new();
    let rogue = DevCa::generate("rogue CA").unwrap();
    let path = pki.dir.path().join("rogue.crl");
    std::fs::write(&path, rogue.crl(&[], 1).unwrap()).unwrap();
    let revocation = Revocation {
        crl_file: Some(path),
        ..Revocation::default()
    };
    let error = ClientTrust::new(pki.ca.cert_pem().as_bytes(), &revocation).unwrap_err();
    assert!(error.to_string().contains("not the client CA"), "{error}");
    // DER is accepted as well as PEM.
    let pem = pki.ca.crl(&[], 1).unwrap();
    let der = <rustls::pki_types::CertificateRevocationListDer as rustls::pki_types::pem::PemObject>::from_pem_slice(pem.as_bytes()).unwrap();
    let path = pki.dir.path().join("good.der");
    std::fs::write(&path, der.as_ref()).unwrap();
    let trust = ClientTrust::new(
        pki.ca.cert_pem().as_bytes(),
        &Revocation {
            crl_file: Some(path),
            ..Revocation::default()
        },
    )
    .unwrap();
    assert_eq!(trust.summary().crls, 1);
}

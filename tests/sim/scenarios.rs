use crate::harness::*;
use otalite::agent::{Command, Completion};

#[test]
fn standalone_install_commit() {
    let mut buffers = Buffers::default();
    let mut w = World::standalone();
    let got = w.run_command(&mut buffers, Command::Install { uri: "/data/sim-a.mender" });
    println!("{}", w.tail(50));
    assert_eq!(got.map(|g| g.0), Some(Completion::Installed));
    w.power_on();
    let got = w.run_command(&mut buffers, Command::Commit);
    println!("{}", w.tail(50));
    assert_eq!(got.map(|g| g.0), Some(Completion::Committed));
    w.check_at_rest();
}

#[test]
fn managed_success() {
    let mut buffers = Buffers::default();
    let mut w = World::managed();
    w.server.deploy("d1", "sim-a");
    let lives = w.run_managed(&mut buffers);
    println!("{}", w.tail(80));
    println!("{:?}", w.server.statuses("d1"));
    assert_eq!(lives, 2);
    w.check_at_rest();
}

//! The Linux data plane of pmip6: what the engines' data-plane intents become in the kernel.
//!
//! The engines (`pmip6-engine`) say *what* must exist — a tunnel to a peer, a prefix routed into
//! it, a source route at a MAG, a flow steered to one MAG — as [`pmip6_engine::Intent`]s. This
//! crate makes it so, idempotently, and owns everything it creates:
//!
//! - [`routing`]: tunnels, per-prefix routes, per-MAG routing tables selected by `fwmark` rules at
//!   the LMA, source routes into the tunnel at a MAG — all through rtnetlink, tagged with our
//!   route protocol so that a restart finds what a previous run left and nothing else is ever
//!   touched. Tunnels are ip6tnl devices where the kernel has them (kernel forwarding both
//!   ways), else seg6 lightweight tunnels, else ([`tunnel`]) one TUN device per peer and a raw
//!   protocol-41 socket forwarding in user space (kernels built without ip6_tunnel,
//!   `CONFIG_IPV6_SEG6_LWTUNNEL`, sit or gre, such as the one the tests run on);
//! - [`steering`]: the nftables flow map (`learn` and `map` modes) applied in-process through
//!   libnftables, one transaction per engine batch;
//! - [`nfqueue`]: the NFQUEUE side of `learn` and `nfqueue` modes (a packet's verdict carries the
//!   mark of its route).
//!
//! Nothing here runs `ip`, `nft` or `iptables` per operation. The one exception DESIGN.md names:
//! on kernels without the nft `queue` statement, one ip6tables NFQUEUE rule is installed at
//! start-up and removed at shutdown.

pub mod nfqueue;
pub mod nft;
pub mod routing;
pub mod steering;
pub mod tunnel;

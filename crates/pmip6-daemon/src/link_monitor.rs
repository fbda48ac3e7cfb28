//! Carrier changes of the MAG's access links, from the kernel's rtnetlink link notifications.
//!
//! A mobile node's link going down is the MAG's detach event (RFC 5213 §6.9.1.4: the MAG
//! de-registers when it detects that the mobile node has left the access link). A link coming
//! back up needs nothing here: the node solicits a router and the Router Solicitation is the
//! attach event.

use std::io;

use futures_channel::mpsc::UnboundedReceiver;
use futures_util::StreamExt;
use pmip6_engine::InterfaceId;
use rtnetlink::MulticastGroup;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::{LinkFlags, LinkMessage};
use rtnetlink::sys::SocketAddr;

/// A change of an interface's carrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkChange {
    /// The interface.
    pub interface: InterfaceId,
    /// Whether it is administratively up with carrier (`IFF_UP` and `IFF_LOWER_UP`).
    pub carrier: bool,
}

/// A subscription to the kernel's link notifications (`RTNLGRP_LINK`).
#[derive(Debug)]
pub struct LinkMonitor {
    messages: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>,
}

impl LinkMonitor {
    /// Subscribes; the netlink connection runs as a task on the current tokio runtime.
    pub fn open() -> io::Result<Self> {
        let (connection, _handle, messages) = rtnetlink::new_multicast_connection(&[MulticastGroup::Link])?;
        tokio::spawn(connection);
        Ok(Self { messages })
    }

    /// The next carrier change (new-link notifications repeat unchanged states; the caller
    /// keeps what it needs to tell a change). `None` when the subscription ended.
    pub async fn next(&mut self) -> Option<LinkChange> {
        loop {
            let (message, _) = self.messages.next().await?;
            if let NetlinkPayload::InnerMessage(inner) = message.payload {
                match inner {
                    RouteNetlinkMessage::NewLink(link) => return Some(change(&link, true)),
                    RouteNetlinkMessage::DelLink(link) => return Some(change(&link, false)),
                    _ => {}
                }
            }
        }
    }
}

fn change(link: &LinkMessage, exists: bool) -> LinkChange {
    let flags = link.header.flags;
    LinkChange {
        interface: InterfaceId(link.header.index),
        carrier: exists && flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::LowerUp),
    }
}

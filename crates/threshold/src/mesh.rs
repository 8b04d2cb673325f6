//! A protocol session's delivery for the library (`round_based`): one authenticated TLS connection to each
//! other party, a reader per connection turning its frames into incoming messages (the sender is the
//! member the connection's certificate names, not anything a frame says), and a sink writing each
//! outgoing message to its recipient, or to every party for a broadcast. Messages are not relayed: no
//! member sees a message meant for another.

use std::{collections::HashMap, io, pin::Pin};

use cggmp21::round_based::{Incoming, MessageDestination, MessageType, Outgoing};
use futures::{Sink, Stream, channel::mpsc};
use serde::{Serialize, de::DeserializeOwned};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf},
    net::TcpStream,
};

use crate::wire::{ProtocolFrame, read_frame, write_frame};

/// A TLS connection, dialled or accepted.
pub type TlsStream = tokio_rustls::TlsStream<TcpStream>;

/// A connection to another party of a session.
pub struct Link {
    /// The member at the other end, by its certificate.
    pub peer: u16,
    /// The mutually authenticated TLS stream to it.
    pub stream: TlsStream,
}

/// Incoming messages of a session.
pub type Inbox<M> = Pin<Box<dyn Stream<Item = Result<Incoming<M>, io::Error>> + Send>>;
/// Outgoing messages of a session.
pub type Outbox<M> = Pin<Box<dyn Sink<Outgoing<M>, Error = io::Error> + Send>>;

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// The delivery of a session among `parties` (member indices in protocol order) over `links`, one per
/// other party.
pub fn delivery<M>(links: Vec<Link>, parties: &[u16]) -> (Inbox<M>, Outbox<M>)
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    let position = |member: u16| parties.iter().position(|p| *p == member).map(|i| i as u16);
    let (tx, rx) = mpsc::unbounded::<Result<Incoming<M>, io::Error>>();
    let mut writers: HashMap<u16, WriteHalf<TlsStream>> = HashMap::new();
    for link in links {
        let Some(sender) = position(link.peer) else {
            continue;
        };
        let (read, write) = tokio::io::split(link.stream);
        writers.insert(sender, write);
        tokio::spawn(read_loop(read, sender, tx.clone()));
    }
    let inbox: Inbox<M> = Box::pin(rx);
    let outbox = futures::sink::unfold(writers, |mut writers, out: Outgoing<M>| async move {
        let frame = ProtocolFrame {
            broadcast: out.recipient.is_broadcast(),
            msg: serde_json::to_value(&out.msg).map_err(invalid)?,
        };
        match out.recipient {
            MessageDestination::AllParties => {
                for w in writers.values_mut() {
                    write_frame(w, &frame).await?;
                }
            }
            MessageDestination::OneParty(to) => {
                let w = writers
                    .get_mut(&to)
                    .ok_or_else(|| invalid(format!("no connection to the session's party {to}")))?;
                write_frame(w, &frame).await?;
            }
        }
        Ok::<_, io::Error>(writers)
    });
    (inbox, Box::pin(outbox))
}

async fn read_loop<R, M>(
    mut read: ReadHalf<R>,
    sender: u16,
    tx: mpsc::UnboundedSender<Result<Incoming<M>, io::Error>>,
) where
    R: AsyncRead + AsyncWrite,
    M: DeserializeOwned,
{
    let mut id = 0u64;
    loop {
        let item = match read_frame::<_, ProtocolFrame>(&mut read).await {
            Ok(frame) => serde_json::from_value::<M>(frame.msg)
                .map(|msg| Incoming {
                    id: (u64::from(sender) << 48) | id,
                    sender,
                    msg_type: if frame.broadcast {
                        MessageType::Broadcast
                    } else {
                        MessageType::P2P
                    },
                    msg,
                })
                .map_err(invalid),
            // A party hangs up once it has what it needs, possibly before this member has read every
            // message of other parties: that is not an error (a party that gave up mid-way shows as the
            // session's timeout). Its messages were all delivered before.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return,
            Err(e) => Err(e),
        };
        id += 1;
        let stop = item.is_err();
        if tx.unbounded_send(item).is_err() || stop {
            return;
        }
    }
}

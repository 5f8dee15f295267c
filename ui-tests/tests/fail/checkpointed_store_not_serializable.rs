// A checkpointed run saves its store at every step: a store that serde cannot
// serialize is refused where the run is started, and only there.
use minllm::durable::MemoryCheckpointer;
use minllm::{flow, node};

#[derive(Default)]
struct Chat {
    turns: Vec<String>,
}

struct Reply;

#[node]
impl Reply {
    fn prep(&self, chat: &Chat) -> usize {
        chat.turns.len()
    }
    fn exec(&self, turns: &usize) -> String {
        format!("turn {turns}")
    }
    fn post(&self, chat: &mut Chat, _: usize, reply: String) {
        chat.turns.push(reply);
    }
}

flow! {
    struct Bot: Chat {
        node reply: Reply = Reply;
        start reply;
    }
}

fn main() {
    let bot = Bot::new();
    // Plain runs need nothing of the store.
    bot.run(&mut Chat::default()).unwrap();
    let checkpoints = MemoryCheckpointer::new();
    let _ = bot.durable(&checkpoints, "chat-1").run(&mut Chat::default());
}

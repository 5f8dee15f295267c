//! Multi-agent: two agents, each its own flow, run at the same time and talk
//! over channels. The hinter knows a secret word and gives hints without
//! saying it; the guesser guesses from the hints; the hinter judges each
//! guess, and the game ends when the word is found or after five hints.
//!
//! `cargo run -p minllm-examples --example multi_agent`

use minllm::{Action, BoxError, flow, node};
use minllm_examples::client::{Message, Reply, Request};
use minllm_examples::model::Model;
use tokio::sync::{Mutex, mpsc};

/// Hints at most.
const ROUNDS: usize = 5;

/// What the hinter tells the guesser.
#[derive(Debug, Clone, PartialEq)]
enum Say {
    Hint(String),
    Over { found: bool },
}

// ---- the hinter ----

#[derive(Debug, Default)]
struct Hinter {
    secret: String,
    hints: Vec<String>,
    guesses: Vec<String>,
    found: bool,
}

#[derive(Clone, Copy, Debug, Action)]
enum Judged {
    Again,
    Over,
}

/// Writes a hint and sends it.
struct Give {
    model: Model,
    to_guesser: mpsc::Sender<Say>,
}

#[node(attempts = 3, wait_ms = 500)]
impl Give {
    async fn prep(&self, h: &Hinter) -> (String, Vec<String>) {
        (h.secret.clone(), h.hints.clone())
    }
    async fn exec(&self, (secret, hints): &(String, Vec<String>)) -> Result<String, BoxError> {
        let request = Request::new(vec![
            Message::system(format!(
                "You give hints for the secret word `{secret}` without saying it. One short sentence."
            )),
            Message::user(format!("Hints so far: {}. Give hint number {}.", hints.join(" / "), hints.len() + 1)),
        ]);
        let hint = self.model.chat_async(&request).await?.content;
        self.to_guesser.send(Say::Hint(hint.clone())).await.map_err(|_| "the guesser left")?;
        Ok(hint)
    }
    async fn post(&self, h: &mut Hinter, hint: String) {
        println!("hinter: {hint}");
        h.hints.push(hint);
    }
}

/// Waits for the guess and judges it.
struct Judge {
    from_guesser: Mutex<mpsc::Receiver<String>>,
    to_guesser: mpsc::Sender<Say>,
}

#[node]
impl Judge {
    async fn exec(&self) -> Result<String, BoxError> {
        Ok(self.from_guesser.lock().await.recv().await.ok_or("the guesser left")?)
    }
    async fn post(&self, h: &mut Hinter, guess: String) -> Result<Judged, BoxError> {
        h.found = guess.trim().eq_ignore_ascii_case(&h.secret);
        h.guesses.push(guess);
        if h.found || h.hints.len() >= ROUNDS {
            self.to_guesser.send(Say::Over { found: h.found }).await.map_err(|_| "the guesser left")?;
            return Ok(Judged::Over);
        }
        Ok(Judged::Again)
    }
}

flow! {
    async struct HinterFlow: Hinter {
        node give: Give = _;
        node judge: Judge = _;
        start give;
        max_steps 100;
        give >> judge;
        judge - Judged::Again >> give;
        judge - Judged::Over >> end;
    }
}

// ---- the guesser ----

#[derive(Debug, Default)]
struct Guesser {
    hints: Vec<String>,
    guesses: Vec<String>,
    found: bool,
}

#[derive(Clone, Copy, Debug, Action)]
enum Heard {
    Hint,
    Over,
}

/// Waits for what the hinter says.
struct Listen {
    from_hinter: Mutex<mpsc::Receiver<Say>>,
}

#[node]
impl Listen {
    async fn exec(&self) -> Result<Say, BoxError> {
        Ok(self.from_hinter.lock().await.recv().await.ok_or("the hinter left")?)
    }
    async fn post(&self, g: &mut Guesser, said: Say) -> Heard {
        match said {
            Say::Hint(hint) => {
                g.hints.push(hint);
                Heard::Hint
            }
            Say::Over { found } => {
                g.found = found;
                Heard::Over
            }
        }
    }
}

/// Guesses from the hints and sends the guess.
struct Guess {
    model: Model,
    to_hinter: mpsc::Sender<String>,
}

#[node(attempts = 3, wait_ms = 500)]
impl Guess {
    async fn prep(&self, g: &Guesser) -> (Vec<String>, Vec<String>) {
        (g.hints.clone(), g.guesses.clone())
    }
    async fn exec(&self, (hints, tried): &(Vec<String>, Vec<String>)) -> Result<String, BoxError> {
        let request = Request::new(vec![
            Message::system("Guess the secret word from the hints. Answer with one word."),
            Message::user(format!("Hints: {}. Wrong guesses so far: {}.", hints.join(" / "), tried.join(", "))),
        ]);
        let guess = self.model.chat_async(&request).await?.content.trim().to_lowercase();
        self.to_hinter.send(guess.clone()).await.map_err(|_| "the hinter left")?;
        Ok(guess)
    }
    async fn post(&self, g: &mut Guesser, guess: String) {
        println!("guesser: {guess}?");
        g.guesses.push(guess);
    }
}

flow! {
    async struct GuesserFlow: Guesser {
        node listen: Listen = _;
        node guess: Guess = _;
        start listen;
        max_steps 100;
        listen - Heard::Hint >> guess >> listen;
        listen - Heard::Over >> end;
    }
}

/// The offline models. The hinter's hints, in order; the guesser picks the
/// word of its vocabulary that fits most hints and was not tried yet.
fn script(request: &Request) -> Reply {
    let asked = request.last_user();
    if let Some(n) =
        asked.strip_suffix('.').and_then(|r| r.rsplit("hint number ").next()).and_then(|n| n.parse::<usize>().ok())
    {
        let hints =
            ["It stands by the sea.", "It shines a bright light at night.", "Ships watch for it near the rocks."];
        return Reply::text(hints.get(n - 1).copied().unwrap_or("It is tall and has a lamp."));
    }
    let vocabulary: [(&str, &[&str]); 4] = [
        ("beach", &["sea", "sand"]),
        ("lamp", &["light", "bright"]),
        ("lighthouse", &["sea", "light", "ships", "rocks", "tall"]),
        ("harbour", &["ships", "sea"]),
    ];
    let hints = asked.to_lowercase();
    let tried = hints.split("wrong guesses so far:").nth(1).unwrap_or("").to_owned();
    let best = vocabulary
        .iter()
        .filter(|(word, _)| !tried.split([',', ' ', '.']).any(|t| t == *word))
        .max_by_key(|(_, keys)| (keys.iter().filter(|k| hints.contains(*k)).count(), std::cmp::Reverse(keys.len())));
    Reply::text(best.map_or("pass", |(w, _)| w))
}

async fn play(secret: &str, model: Model) -> Result<(Hinter, Guesser), minllm::Error> {
    let (to_guesser, from_hinter) = mpsc::channel(4);
    let (to_hinter, from_guesser) = mpsc::channel(4);
    let hinter = HinterFlow::new(
        Give { model: model.clone(), to_guesser: to_guesser.clone() },
        Judge { from_guesser: Mutex::new(from_guesser), to_guesser },
    );
    let guesser = GuesserFlow::new(Listen { from_hinter: Mutex::new(from_hinter) }, Guess { model, to_hinter });
    let (mut h, mut g) = (Hinter { secret: secret.to_owned(), ..Hinter::default() }, Guesser::default());
    // The two agents run at the same time, each its own flow.
    let (a, b) = tokio::join!(hinter.run(&mut h), guesser.run(&mut g));
    a?;
    b?;
    Ok((h, g))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (hinter, _) = play("lighthouse", Model::from_env(script)?).await?;
    let verdict = if hinter.found { "found" } else { "not found" };
    println!("`{}` {verdict} after {} hints", hinter.secret, hinter.hints.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_agents_talk_until_the_word_is_found() {
        let (hinter, guesser) = play("lighthouse", Model::scripted(script)).await.unwrap();
        assert!(hinter.found && guesser.found);
        assert_eq!(guesser.guesses, ["harbour", "lamp", "lighthouse"]);
        assert_eq!(hinter.guesses, guesser.guesses, "every guess reached the hinter");
        assert_eq!(hinter.hints, guesser.hints, "every hint reached the guesser");
    }

    #[tokio::test]
    async fn a_word_never_found_ends_the_game_after_five_hints() {
        let (hinter, guesser) = play("submarine", Model::scripted(script)).await.unwrap();
        assert!(!hinter.found && !guesser.found);
        assert_eq!(hinter.hints.len(), ROUNDS);
        assert_eq!(guesser.guesses.len(), ROUNDS);
    }
}

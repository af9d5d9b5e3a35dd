// Flink's word count as a Weir job, in JavaScript.
//
// - `--input PATH --output PATH`: counts the words of a text file and writes
//   the final count of every word as `word<TAB>count` lines, sorted by word.
// - `--hostname H --port P`: counts words read from a socket and prints the
//   running counts, as Flink's `SocketWindowWordCount` without the window.
// - no arguments: counts the words of a bundled text (Hamlet's soliloquy, as
//   Flink's example does) and prints the final counts.
//
// Build: `weir-js build job.js -o js_wordcount.wasm`.

import { job, WeirError } from "@weir/sdk";

/** The bundled text. */
export const DEFAULT_TEXT = `To be, or not to be,--that is the question:--
Whether 'tis nobler in the mind to suffer
The slings and arrows of outrageous fortune
Or to take arms against a sea of troubles,
And by opposing end them?--To die,--to sleep,--
No more; and by a sleep to say we end
The heartache, and the thousand natural shocks
That flesh is heir to,--'tis a consummation
Devoutly to be wish'd. To die,--to sleep;--
To sleep! perchance to dream:--ay, there's the rub;
For in that sleep of death what dreams may come,
When we have shuffled off this mortal coil,
Must give us pause: there's the respect
That makes calamity of so long life;
For who would bear the whips and scorns of time,
The oppressor's wrong, the proud man's contumely,
The pangs of despis'd love, the law's delay,
The insolence of office, and the spurns
That patient merit of the unworthy takes,
When he himself might his quietus make
With a bare bodkin? who would these fardels bear,
To grunt and sweat under a weary life,
But that the dread of something after death,--
The undiscover'd country, from whose bourn
No traveller returns,--puzzles the will,
And makes us rather bear those ills we have
Than fly to others that we know not of?
Thus conscience does make cowards of us all;
And thus the native hue of resolution
Is sicklied o'er with the pale cast of thought;
And enterprises of great pith and moment,
With this regard, their currents turn awry,
And lose the name of action.--Soft you now!
The fair Ophelia!--Nymph, in thy orisons
Be all my sins remember'd.
`;

/** Splits a line into `[word, 1]` pairs, as Flink's `Tokenizer`. */
export function tokenize(line) {
  return line.split(/\s+/).filter((word) => word.length > 0).map((word) => [word, 1]);
}

job("wordcount", (env, args) => {
  let text;
  if (args.has("input")) {
    text = env.readTextFile(args.get("input"));
  } else if (args.has("hostname")) {
    text = env.socketTextStream(args.get("hostname"), args.getNumber("port"));
  } else if (args.raw.length === 0) {
    const lines = DEFAULT_TEXT.split("\n").filter((l, i, all) => i < all.length - 1 || l.length > 0);
    text = env.fromGenerator((i) => lines[i], { count: lines.length });
  } else {
    throw new WeirError(
      "give --input PATH (with --output PATH), or --hostname HOST --port PORT, or no arguments for the bundled text",
    );
  }
  const counts = text
    .flatMap(tokenize).name("tokenizer").uid("tokenizer")
    .keyBy((pair) => pair[0])
    .sum(1).name("counts").uid("counts");
  if (args.has("output")) {
    counts
      .map(([word, count]) => `${word}\t${count}`).name("format").uid("format")
      .writeAsText(args.get("output")).sorted().setParallelism(1).uid("sink");
  } else {
    counts.print().uid("print");
  }
});

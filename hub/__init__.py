"""Publishing to the Hugging Face Hub: model and dataset cards (`hub.cards`) and the push command (`hub.push`)."""

from latent_reward.cli import main

main()
